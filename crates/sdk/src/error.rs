use reqwest::StatusCode;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status; `detail` is its explanation.
    #[error("HTTP {status}: {detail}")]
    Api { status: u16, detail: String },
    /// The server could not be reached, or did not answer in time.
    #[error("request failed: {0}")]
    Network(#[source] reqwest::Error),
    /// The server answered 2xx with a body this client cannot read.
    #[error("unexpected response from the server: {0}")]
    Decode(String),
    /// Bad local input (base URL, missing key, unreadable file).
    #[error("{0}")]
    Invalid(String),
    /// A terminal's WebSocket failed or was closed by the server with an error code.
    #[error("terminal connection: {0}")]
    Terminal(String),
    #[error("task {task_id} did not complete within {waited:?}")]
    TaskTimeout { task_id: String, waited: Duration },
}

impl Error {
    /// The HTTP status of an [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The explanation in an error body: `detail`, `error` or `message` (the first item when it is
/// a list), else the trimmed text, else the status reason (what the official CLI does).
pub(crate) fn detail_of(status: StatusCode, body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
        for key in ["detail", "error", "message"] {
            match map.get(key) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => return s.clone(),
                Some(serde_json::Value::Array(items)) => {
                    if let Some(first) = items.first() {
                        return match first {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Object(o) => o
                                .get("msg")
                                .and_then(|m| m.as_str())
                                .map_or_else(|| first.to_string(), str::to_owned),
                            other => other.to_string(),
                        };
                    }
                }
                Some(other) if !other.is_null() => return other.to_string(),
                _ => {}
            }
        }
    }
    let text = String::from_utf8_lossy(body).trim().to_owned();
    if !text.is_empty() {
        return text.chars().take(500).collect();
    }
    status.canonical_reason().unwrap_or("error").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_detail_like_the_official_cli() {
        let s = StatusCode::NOT_FOUND;
        assert_eq!(
            detail_of(s, br#"{"detail":"session not found"}"#),
            "session not found"
        );
        assert_eq!(detail_of(s, br#"{"error":"x"}"#), "x");
        assert_eq!(
            detail_of(s, br#"{"detail":[{"msg":"bad field"}]}"#),
            "bad field"
        );
        assert_eq!(detail_of(s, b"  plain text \n"), "plain text");
        assert_eq!(detail_of(s, b""), "Not Found");
    }
}
