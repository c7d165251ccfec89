use serde::{Deserialize, Serialize};

/// The body of every error response: a JSON object with a human-readable `detail`
/// (spec §0.3; FastAPI style, which the official client reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub detail: String,
}

impl ErrorBody {
    pub fn new(detail: impl Into<String>) -> Self {
        ErrorBody {
            detail: detail.into(),
        }
    }
}
