//! Audit events (spec §14).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `GET /v1/audit/catalog`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCatalog {
    pub catalog: BTreeMap<String, Vec<String>>,
}

/// Query of `GET /v1/audit/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// One state change the platform made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub event_group: String,
    pub event_type: String,
    /// `success` or `failure`.
    pub status: String,
    pub user_id: Option<i64>,
    pub vm_id: Option<String>,
    pub session_id: Option<String>,
    pub resource_type: String,
    pub resource_id: String,
    /// `user`, `admin` or `system`.
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub request_id: Option<String>,
    pub event_payload: serde_json::Value,
    pub error_message: Option<String>,
}

/// A page of events, newest first; `next_cursor` continues towards older ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEventPage {
    pub items: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
}
