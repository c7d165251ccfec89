//! Sessions (spec §1.1, §1.7 to §1.12).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// JSON object used for free-form session metadata.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// `POST /v1/sessions/session`. The official SDK sends the key in the body, not in a header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StartSessionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_lifetime_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
}

/// The answer to a session start: the session record.
pub type StartSessionResponse = SessionInfo;

/// Lifecycle of a session. Only `active` sessions run code; the others are kept as records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Active,
    /// Its lifetime ran out.
    Expired,
    /// Killed through `/kill`, or its sandbox died or was lost.
    Terminated,
    /// Its VM is suspended: no sandbox runs, and a resume brings it back.
    Suspended,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Active => "active",
            SessionState::Expired => "expired",
            SessionState::Terminated => "terminated",
            SessionState::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(SessionState::Active),
            "expired" => Some(SessionState::Expired),
            "terminated" => Some(SessionState::Terminated),
            "suspended" => Some(SessionState::Suspended),
            _ => None,
        }
    }
}

/// `GET /v1/sessions/session/{id}`, the items of `GET /v1/sessions/sandboxes`, and the answer
/// to a session start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub session_id: String,
    pub vm_id: String,
    pub status: SessionState,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    /// Why a session is no longer active (e.g. "killed", "expired", "sandbox died").
    #[serde(default)]
    pub end_reason: Option<String>,
    pub vm_lifetime_seconds: u64,
    pub memory_mb: u32,
    pub vcpu_count: u32,
    #[serde(default)]
    pub metadata: Metadata,
}

/// `GET /v1/sessions/status/{id}`. The official client treats the session as active only when
/// `vm_status == "active"`; the agents integration counts it usable when `exists` and
/// (`!vm_assigned` or `vm_alive`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStatus {
    pub session_id: String,
    pub vm_id: String,
    /// `"active"` while the sandbox runs, otherwise the session state.
    pub vm_status: String,
    pub status: SessionState,
    pub exists: bool,
    pub vm_assigned: bool,
    pub vm_alive: bool,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub end_reason: Option<String>,
}

/// `GET /v1/sessions/usage/{id}`: counters kept by the server, plus live resource figures while
/// the sandbox runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionUsage {
    pub session_id: String,
    pub vm_id: String,
    pub status: SessionState,
    pub execution_count: u64,
    /// Wall-clock seconds spent in executions.
    pub execution_time: f64,
    /// CPU seconds used by executions.
    pub cpu_time: f64,
    /// Seconds the session has been (or was) alive.
    pub uptime_seconds: f64,
    pub memory_mb: u32,
    pub vcpu_count: u32,
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    #[serde(default)]
    pub memory_limit_bytes: Option<u64>,
    #[serde(default)]
    pub disk_bytes: Option<u64>,
    #[serde(default)]
    pub disk_limit_bytes: Option<u64>,
    #[serde(default)]
    pub pids: Option<u64>,
}

/// Query of `GET /v1/sessions/app-url/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppUrlQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
}

/// `GET /v1/sessions/app-url/{id}` (`url` and `app_url` are equal, spec §1.11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppUrl {
    pub session_id: String,
    /// The share's URL to open: its access link when the share is private.
    pub app_url: String,
    pub url: String,
    /// The share's plain URL (the agents integration keeps only its scheme, host and port).
    pub direct_url: String,
    pub port: u16,
    pub share_id: String,
    pub is_public: bool,
}

/// Query of `GET /v1/sessions/sandboxes`. `metadata` is a JSON-encoded object; a session
/// matches when every key of the filter has an equal value in the session's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `POST /kill`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillRequest {
    pub session_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillResponse {
    pub success: bool,
    pub session_id: String,
    pub status: SessionState,
}
