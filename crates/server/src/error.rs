//! The one table that turns every failure into an HTTP status and a JSON `{"detail": ...}`.
//!
//! Internal failures are logged with their full chain and answered with a generic detail, so a
//! 5xx never leaks paths, SQL or runtime internals. The `x-request-id` response header ties the
//! answer to the log line.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use instavm_api::ErrorBody;
use instavm_runtime::RuntimeError;
use instavm_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input: bad JSON syntax, bad multipart, a path with `..`.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or unknown API key.
    #[error("{0}")]
    Unauthorized(String),
    /// Not allowed, or over a limit (the official client reads tier and limit messages here).
    #[error("{0}")]
    Forbidden(String),
    /// Unknown, or not the caller's (the two are indistinguishable on purpose).
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed input with a wrong value or type.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// Not ready yet (the runtime is still preparing).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a host failure; the message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client is told.
    pub fn detail(&self) -> String {
        match self {
            ApiError::Internal(_) => {
                "internal server error; the server log has the details (match the x-request-id header)"
                    .to_owned()
            }
            other => other.to_string(),
        }
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        ApiError::Internal(err.to_string())
    }

    /// Build from an axum extractor rejection, keeping its status but answering in JSON.
    pub fn from_rejection(status: StatusCode, text: String) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(text),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(text),
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable(text),
            StatusCode::NOT_FOUND => ApiError::NotFound(text),
            s if s.is_server_error() => ApiError::Internal(text),
            _ => ApiError::BadRequest(text),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = (status, Json(ErrorBody::new(self.detail()))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("X-API-Key"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => ApiError::Conflict(format!("{what} already exists")),
            other => ApiError::Internal(format!("store: {other}")),
        }
    }
}

/// Runtime errors: the caller's mistakes become 4xx, host failures 500.
impl From<RuntimeError> for ApiError {
    fn from(err: RuntimeError) -> Self {
        match err {
            RuntimeError::NotFound(_) | RuntimeError::NotRunning(_) => {
                ApiError::NotFound("the session's sandbox is no longer running".into())
            }
            RuntimeError::InvalidPath(m) => ApiError::BadRequest(format!("invalid path: {m}")),
            RuntimeError::FileNotFound(p) => {
                ApiError::NotFound(format!("no such file or directory: {p}"))
            }
            RuntimeError::WrongFileType(m) => ApiError::BadRequest(format!("wrong file type: {m}")),
            RuntimeError::InvalidSpec(m) => {
                ApiError::Unprocessable(format!("invalid sandbox spec: {m}"))
            }
            RuntimeError::QuotaExceeded(m) => {
                ApiError::Forbidden(format!("disk quota exceeded: {m}"))
            }
            RuntimeError::Exhausted(m) => {
                ApiError::TooManyRequests(format!("the host is at capacity ({m}); retry later"))
            }
            err @ RuntimeError::Unsupported { .. } => ApiError::Unprocessable(err.to_string()),
            RuntimeError::AlreadyExists(m) => ApiError::Conflict(format!("{m} already exists")),
            RuntimeError::PtyNotFound(id) => {
                ApiError::NotFound(format!("no terminal {id:?} in this VM"))
            }
            RuntimeError::LimitReached(m) => ApiError::Forbidden(m),
            RuntimeError::InvalidRequest(m) => ApiError::BadRequest(m),
            err @ (RuntimeError::Unavailable(_)
            | RuntimeError::Agent(_)
            | RuntimeError::Io { .. }) => ApiError::Internal(format!("runtime: {err}")),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
