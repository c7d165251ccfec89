//! Workloads (ours; the official client only has "not supported yet" stubs): deployed `kind: cron`
//! and `kind: job` manifests. Each run boots a fresh VM from the deployed snapshot, runs the
//! start command, and keeps its exit code, duration and output. docs/deploy.md.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    Cron,
    Job,
}

/// What a schedule does when its previous run is still going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    #[default]
    Skip,
    Queue,
    Overlap,
}

/// What happens to the runs a schedule missed while the server was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Catchup {
    Skip,
    #[default]
    RunOnce,
    RunAll,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    #[serde(default)]
    pub max: u32,
    #[serde(default = "default_backoff")]
    pub backoff_seconds: u64,
}

fn default_backoff() -> u64 {
    30
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max: 0,
            backoff_seconds: default_backoff(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Five fields: minute hour day-of-month month day-of-week.
    pub cron: String,
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default)]
    pub concurrency: Concurrency,
    #[serde(default)]
    pub catchup: Catchup,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub retries: RetryPolicy,
}

fn utc() -> String {
    "UTC".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerType {
    Manual,
    Webhook,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerAuth {
    #[default]
    None,
    ApiKey,
    Hmac,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    #[serde(rename = "type")]
    pub kind: TriggerType,
    /// Webhook triggers: the path after the workload's hook URL, starting with `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default)]
    pub auth: TriggerAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// In answers: where a webhook trigger listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadVm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu_count: Option<u32>,
}

/// `POST /v1/workloads`: register (or replace) the workload `slug`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateWorkloadRequest {
    pub slug: String,
    pub kind: WorkloadKind,
    #[serde(default)]
    pub version: Option<String>,
    /// A ready snapshot of the caller's: every run boots from it.
    pub snapshot_id: String,
    /// Where `start_command` runs inside the VM.
    #[serde(default)]
    pub workdir: Option<String>,
    pub start_command: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub vm: WorkloadVm,
    /// Required for `cron`, refused for `job`.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// Required (non-empty) for `job`, refused for `cron`.
    #[serde(default)]
    pub triggers: Vec<Trigger>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadStatus {
    Active,
    Paused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadRecord {
    pub id: String,
    pub slug: String,
    pub kind: WorkloadKind,
    pub version: String,
    pub status: WorkloadStatus,
    pub snapshot_id: String,
    pub workdir: String,
    pub start_command: String,
    /// Names only: values may be secrets.
    pub env_keys: Vec<String>,
    pub vm: WorkloadVm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    /// The schedule's next time (`null` for jobs and paused workloads).
    #[serde(default)]
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `whsec_...`, only in the answer that made it (a job with an `hmac` trigger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadList {
    pub workloads: Vec<WorkloadRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    Schedule,
    Manual,
    Webhook,
    Catchup,
    Retry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Skipped,
}

impl RunStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub workload_id: String,
    pub slug: String,
    pub trigger: RunTrigger,
    pub status: RunStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// 1 for the first try, 2 for the first retry, ...
    pub attempt: u32,
    /// The schedule's time this run is for (cron runs).
    #[serde(default)]
    pub scheduled_for: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub vm_id: Option<String>,
    /// Why a run failed before or around its command (a VM that did not boot, a timeout).
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunList {
    pub runs: Vec<RunRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLogs {
    pub run_id: String,
    pub stdout: String,
    pub stderr: String,
}
