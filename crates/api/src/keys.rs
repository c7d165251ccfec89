//! API keys (spec §13) and SSH keys (spec §3).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /v1/api-keys/`. The spec allows any keys; these are the ones the server reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateApiKeyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `PATCH /v1/api-keys/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateApiKeyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `false` revokes the key without deleting its record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
}

/// An API key record. The key itself is never stored, so it never appears here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: i64,
    #[serde(default)]
    pub description: Option<String>,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

/// The answer to a key creation: the only time the plaintext key is shown. `key` repeats
/// `api_key` for clients that read either name (spec §13.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub record: ApiKey,
    pub api_key: String,
    pub key: String,
}

/// The answer to a DELETE: always an object (spec §0.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub id: i64,
    pub deleted: bool,
}

/// `POST /v1/ssh-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddSshKeyRequest {
    pub public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKey {
    pub id: i64,
    /// OpenSSH format: `SHA256:` + unpadded base64 of sha256(key blob).
    pub fingerprint: String,
    pub key_type: String,
    #[serde(default)]
    pub comment: Option<String>,
    pub public_key: String,
    pub created_at: DateTime<Utc>,
}

/// `GET /v1/ssh-keys`: a wrapped object, never a bare array (spec §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKeyList {
    pub keys: Vec<SshKey>,
}
