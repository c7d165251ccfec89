//! Users (spec §20) and the self-hosting admin API.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// `GET /v1/users/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    pub is_verified: bool,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
}

/// Query of `GET /v1/users/me/usage-breakdown`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageBreakdownQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<NaiveDate>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub cost_dollars: f64,
    /// vCPU-hours reserved by sessions.
    pub cpu_hours: f64,
    /// GiB-hours of memory reserved by sessions.
    pub ram_gib_hours: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyUsage {
    pub date: NaiveDate,
    pub cost_dollars: f64,
    pub cpu_hours: f64,
    pub ram_gib_hours: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageBreakdown {
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub total_days: u32,
    pub totals: UsageTotals,
    pub daily_breakdown: Vec<DailyUsage>,
}

/// `POST /v1/admin/users` (admin key only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateUserRequest {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The new user plus its first API key, shown only in this answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedUser {
    #[serde(flatten)]
    pub user: User,
    pub api_key: String,
    pub api_key_id: i64,
}

/// Per-user quota overrides an operator sets (`PUT /v1/admin/users/{id}/limits`). Each field
/// left out takes the server's value (its `--config` file or default); the names are those of
/// the config file's `[limits]` and `[admission]` tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_sessions_per_user: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_vcpu_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime_seconds: Option<u64>,
    /// Sum of memory over the user's live sandboxes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_vcpus: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_disk_mb: Option<u64>,
}

/// The limits in force for one user: every field, after the overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveLimits {
    pub max_active_sessions_per_user: u64,
    pub max_memory_mb: u32,
    pub max_vcpu_count: u32,
    pub max_lifetime_seconds: u64,
    pub user_memory_mb: u64,
    pub user_vcpus: u64,
    pub user_disk_mb: u64,
}

/// `GET` and `PUT /v1/admin/users/{id}/limits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLimitsResponse {
    pub user_id: i64,
    /// What the operator set for this user (empty: the server's limits apply).
    pub overrides: UserLimits,
    pub effective: EffectiveLimits,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}
