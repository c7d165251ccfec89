//! Tapes (spec §17): a session recorded step by step, its filesystem diffed between steps and a
//! live VM branched from any step (docs/tapes.md).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `recording` until stopped (or its session ends), `failed` if recording broke, `expired` once
/// its retention ran out and its checkpoints were freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TapeStatus {
    Recording,
    Stopped,
    Failed,
    Expired,
}

impl TapeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TapeStatus::Recording => "recording",
            TapeStatus::Stopped => "stopped",
            TapeStatus::Failed => "failed",
            TapeStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "recording" => TapeStatus::Recording,
            "stopped" => TapeStatus::Stopped,
            "failed" => TapeStatus::Failed,
            "expired" => TapeStatus::Expired,
            _ => return None,
        })
    }
}

/// A tape as §17.1, §17.2 and §17.4 answer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapeRecord {
    pub id: String,
    /// Same as `id`.
    pub tape_id: String,
    pub status: TapeStatus,
    pub session_id: String,
    pub vm_id: Option<String>,
    /// Steps recorded so far (the last `step_id`).
    pub total_steps: u64,
    pub record_fs: bool,
    pub record_egress_content: bool,
    pub retention_days: u32,
    /// Set on a tape branched from another.
    pub parent_tape_id: Option<String>,
    pub parent_step_id: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    /// Why recording failed.
    pub error: Option<String>,
}

/// `POST /v1/sessions/{session_id}/tape/start`. The official SDK always sends all three.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartTapeRequest {
    #[serde(default)]
    pub record_egress_content: Option<bool>,
    #[serde(default)]
    pub record_fs: Option<bool>,
    #[serde(default)]
    pub retention_days: Option<u32>,
}

/// Query of `GET /v1/tapes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapeListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// One step of a tape (§17.5). Server-recorded kinds: `execute`, `upload`, `download`,
/// `pty_open`, `pty_close`, `fs_summary`, `branch`; clients add `tool_call_start`,
/// `tool_call_end`, `llm_call`, `agent_log`, `vnc_marker` (and any other kind they like).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapeEvent {
    pub step_id: u64,
    pub kind: String,
    pub ts: DateTime<Utc>,
    pub payload: Value,
    #[serde(default)]
    pub parent_step_id: Option<u64>,
    /// The filesystem checkpoint taken after this step (`record_fs`).
    #[serde(default)]
    pub checkpoint_id: Option<String>,
}

/// Query of `GET /v1/tapes/{id}/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapeEventsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_step: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `POST /v1/tapes/{id}/events`. A `step_id` the client sends names the step this event
/// belongs to (the SDK's `ToolCallRecorder` sends the start's on the end event): it becomes the
/// `parent_step_id` when none is given. Every event gets a new step of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppendTapeEventRequest {
    pub kind: String,
    #[serde(default)]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_step_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_id: Option<String>,
}

/// Query of `GET /v1/tapes/{id}/diff` (the names are `from` and `to`). `mode=content` adds
/// unified diffs of small text files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapeDiffQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// `GET /v1/tapes/{id}/diff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapeDiff {
    pub tape_id: String,
    pub from_step: u64,
    pub to_step: u64,
    /// `metadata` or `content`.
    pub mode: String,
    /// Every path added, modified or deleted, sorted.
    pub changed_paths: Vec<String>,
    pub added: Vec<String>,
    pub modified: Vec<String>,
    pub deleted: Vec<String>,
    /// `mode=content`: a unified diff per changed small text file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<Vec<FileDiff>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDiff {
    pub path: String,
    pub diff: String,
}

/// `POST /v1/tapes/{id}/branch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchTapeRequest {
    #[serde(default)]
    pub at_step: Option<u64>,
    /// `live` (default) or `replay`.
    #[serde(default)]
    pub mode: Option<String>,
}

/// `POST /v1/tapes/{id}/branch`: the new VM and the child tape recording it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchTapeResponse {
    pub tape_id: String,
    pub parent_tape_id: String,
    pub parent_step_id: u64,
    pub status: TapeStatus,
    pub mode: String,
    pub vm_id: String,
    pub session_id: String,
    /// `replay`: the executions re-run in the new VM.
    pub replayed_steps: u64,
}

/// `GET /v1/tapes/{id}/lanes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapeLanes {
    pub tape_id: String,
    pub lanes: std::collections::BTreeMap<String, u64>,
}

/// `GET /v1/tapes/{id}/export`: the tape, every event, and its checkpoints by reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapeExport {
    /// `instavm.tape.v1`.
    pub format: String,
    pub exported_at: DateTime<Utc>,
    pub tape: TapeRecord,
    pub events: Vec<TapeEvent>,
    pub checkpoints: Vec<TapeCheckpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapeCheckpoint {
    pub checkpoint_id: String,
    /// The state after this step (0: when recording started).
    pub step_id: u64,
    pub created_at: DateTime<Utc>,
}

/// `DELETE /v1/tapes/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteTapeResponse {
    pub success: bool,
    pub tape_id: String,
    pub checkpoints_deleted: u64,
}
