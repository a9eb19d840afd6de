//! The one error type every handler returns. Clients see a status and a short, safe message;
//! internal detail (SQL, I/O) is replaced by a generic 500 and handed, through the response's
//! extensions ([`ErrorDetail`]), to the middleware that logs it with its route
//! ([`crate::metrics::log_internal_errors`]).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A handler failure.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no or bad credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: authenticated but not allowed (a used-up enrollment token, another agent's id).
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: refused by the rollout rules (skipping a gate, a second active rollout, …).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than the endpoint takes.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// 422: well-formed JSON that does not parse into the protocol's bounds.
    #[error("{0}")]
    Unprocessable(String),
    /// 429: this client or agent is over its quota, or backing off after failed logins;
    /// `Retry-After` says when to come back.
    #[error("{message}")]
    TooManyRequests {
        message: &'static str,
        retry_after_s: u64,
    },
    /// 503: overloaded or shutting down; try again.
    #[error("{0}")]
    Unavailable(&'static str),
    /// 500: our problem; the detail is logged, never sent.
    #[error("internal: {0}")]
    Internal(String),
}

impl AppError {
    pub fn internal(e: impl std::fmt::Display) -> AppError {
        AppError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> AppError {
        AppError::Internal(format!("database: {e}"))
    }
}

/// What an error response carries in its extensions for the logging middleware: never sent.
#[derive(Debug, Clone)]
pub enum ErrorDetail {
    /// A 500's cause (SQL, I/O, a failed task).
    Internal(String),
    /// The message a refused request was answered with.
    Refused(String),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (message, detail) = match &self {
            AppError::Internal(detail) => (
                "internal error".to_owned(),
                ErrorDetail::Internal(detail.clone()),
            ),
            other => {
                let m = other.to_string();
                (m.clone(), ErrorDetail::Refused(m))
            }
        };
        let mut resp = (status, Json(serde_json::json!({ "error": message }))).into_response();
        resp.extensions_mut().insert(detail);
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let AppError::TooManyRequests { retry_after_s, .. } = self {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_s.max(1)),
            );
        }
        resp
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_is_hidden() {
        let resp = AppError::Internal("SELECT secret FROM x".into()).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(matches!(
            resp.extensions().get::<ErrorDetail>(),
            Some(ErrorDetail::Internal(d)) if d == "SELECT secret FROM x"
        ));
    }

    #[test]
    fn too_many_requests_says_when_to_come_back() {
        let resp = AppError::TooManyRequests {
            message: "slow down",
            retry_after_s: 0,
        }
        .into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            resp.headers().get(axum::http::header::RETRY_AFTER),
            Some(&axum::http::HeaderValue::from(1u64))
        );
    }
}
