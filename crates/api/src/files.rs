//! File transfer (spec §1.5, §1.6).

use serde::{Deserialize, Serialize};

/// Multipart field names of `POST /upload`.
pub mod upload_fields {
    pub const FILE: &str = "file";
    pub const REMOTE_PATH: &str = "remote_path";
    pub const SESSION_ID: &str = "session_id";
    pub const RECURSIVE: &str = "recursive";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResponse {
    pub success: bool,
    /// The absolute path the file was written to.
    pub remote_path: String,
    pub size: u64,
}

/// `POST /download`, sent form-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRequest {
    pub filename: String,
    pub session_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadResponse {
    pub filename: String,
    pub size: u64,
    /// Standard base64 of the file bytes ("" for an empty file).
    pub content: String,
}
