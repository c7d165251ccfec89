//! Extractors that answer bad input with a JSON `detail` instead of axum's plain-text
//! rejections.

use crate::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A JSON body. Syntax errors are 400; a well-formed body with a wrong field is 422 and names
/// the field. The content type is not checked: the body is what matters.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError::from_rejection(r.status(), r.body_text()))?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parse a JSON document into `T` with a precise error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "request body is empty; expected a JSON object".into(),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_data() {
            if path == "." {
                ApiError::Unprocessable(format!("invalid request body: {inner}"))
            } else {
                ApiError::Unprocessable(format!("invalid value for `{path}`: {inner}"))
            }
        } else {
            ApiError::BadRequest(format!("invalid JSON body: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// A query string.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|r| ApiError::Unprocessable(r.body_text()))
    }
}

/// An `application/x-www-form-urlencoded` body.
pub struct ApiForm<T>(pub T);

impl<S, T> FromRequest<S> for ApiForm<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|f| ApiForm(f.0))
            .map_err(|r| ApiError::from_rejection(r.status(), r.body_text()))
    }
}

/// One path parameter, percent-decoded.
pub struct ApiPath(pub String);

impl<S> FromRequestParts<S> for ApiPath
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|r| ApiError::BadRequest(r.body_text()))
    }
}

/// Two path parameters, percent-decoded (an owner id and an id inside it).
pub struct ApiPath2(pub String, pub String);

impl<S> FromRequestParts<S> for ApiPath2
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath2(p.0 .0, p.0 .1))
            .map_err(|r| ApiError::BadRequest(r.body_text()))
    }
}

/// A multipart body.
pub struct ApiMultipart(pub axum::extract::Multipart);

impl<S> FromRequest<S> for ApiMultipart
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::extract::Multipart::from_request(req, state)
            .await
            .map(ApiMultipart)
            .map_err(|r| ApiError::from_rejection(r.status(), r.body_text()))
    }
}

/// An integer id in a path (API keys, SSH keys).
pub fn parse_int_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::Unprocessable(format!("{what} ids are integers, got {raw:?}")))
}
