//! Shares (spec §9): a URL that serves one port inside a VM, publicly or to its owner only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /v1/shares`. `port` is taken as any integer so an out-of-range one gets a clear 422.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateShareRequest {
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub is_public: Option<bool>,
    /// The target, when `vm_id` is not given (the SDK fills it in from its session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The target; wins over `session_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
}

/// `PATCH /v1/shares/{share_id}`: at least one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateShareRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_public: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareState {
    Active,
    Revoked,
}

/// A share, as every share route answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRecord {
    pub share_id: String,
    /// Same as `share_id`.
    pub id: String,
    /// Serves the port at its root path. A private share needs the owner's `X-API-Key` header
    /// here, or a visit to `access_url` first.
    pub url: String,
    /// `url` with the share's access token (`?instavm_share_token=`): a visit sets a cookie for
    /// the share and redirects to `url`. The same as `url` for a public share.
    pub access_url: String,
    pub port: u16,
    pub is_public: bool,
    /// The VM the share serves now (a resumed VM gets a new id; the share follows it).
    pub vm_id: String,
    pub session_id: String,
    pub status: ShareState,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}
