//! Code execution (spec §1.2 to §1.4).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /execute` and `POST /execute_async`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteRequest {
    pub command: String,
    pub session_id: String,
    /// `"python"` (the default) or `"bash"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Seconds. The server stops the code slightly before this so its answer arrives before
    /// the client gives up (agents.md §2.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// The answer to `POST /execute`. A non-zero exit code is a normal answer (HTTP 200).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteResponse {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
    /// Wall-clock seconds.
    pub execution_time: f64,
    /// CPU seconds.
    pub cpu_time: f64,
    /// Same as `stdout` (read by the deprecated streaming shim and the CLI fallback).
    pub output: String,
    /// True when the code was stopped by the timeout (`exit_code` is then 124).
    pub timed_out: bool,
    pub language: String,
}

/// The answer to `POST /execute_async`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteAsyncResponse {
    pub task_id: String,
    pub session_id: String,
    pub status: TaskStatus,
    pub language: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    /// Finished; the code's own exit code may still be non-zero.
    Complete,
    /// Could not run to the end (the session ended, or the server restarted meanwhile).
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Complete => "complete",
            TaskStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(TaskStatus::Pending),
            "complete" => Some(TaskStatus::Complete),
            "failed" => Some(TaskStatus::Failed),
            _ => None,
        }
    }
}

/// `GET /v1/executions/{task_id}`. `serialized_stdout` is plain text despite its name (§1.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    pub task_id: String,
    pub session_id: String,
    pub language: String,
    pub status: TaskStatus,
    /// True for `complete` and `failed`: the official client polls until this is true.
    pub is_complete: bool,
    pub serialized_stdout: String,
    pub serialized_stderr: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub timed_out: bool,
    #[serde(default)]
    pub execution_time: Option<f64>,
    #[serde(default)]
    pub cpu_time: Option<f64>,
    /// Why a `failed` task did not run to the end.
    #[serde(default)]
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
}
