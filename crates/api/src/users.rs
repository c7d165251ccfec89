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
