//! Rows as the rest of the server sees them.

use chrono::{DateTime, Utc};
pub use instavm_api::{
    Metadata, SessionState, SnapshotRecord, SnapshotState, TaskStatus, VmRecord, VmState,
};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: i64,
    pub user_id: i64,
    pub prefix: String,
    pub description: Option<String>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKeyRecord {
    pub id: i64,
    pub user_id: i64,
    pub key_type: String,
    pub public_key: String,
    pub fingerprint: String,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: i64,
    pub vm_id: String,
    pub sandbox_id: String,
    pub status: SessionState,
    pub end_reason: Option<String>,
    pub memory_mb: u32,
    pub vcpu_count: u32,
    pub lifetime_seconds: u64,
    pub metadata: Metadata,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub usage: UsageCounters,
}

/// Execution counters of a session. The server adds to them in memory and flushes in batches,
/// so a hot `/execute` path does not pay for an fsync.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UsageCounters {
    pub execution_count: u64,
    pub execution_seconds: f64,
    pub cpu_seconds: f64,
}

impl UsageCounters {
    pub fn add(&mut self, other: UsageCounters) {
        self.execution_count += other.execution_count;
        self.execution_seconds += other.execution_seconds;
        self.cpu_seconds += other.cpu_seconds;
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRow {
    pub id: String,
    pub session_id: String,
    pub user_id: i64,
    pub language: String,
    pub status: TaskStatus,
    pub stdout: String,
    pub stderr: String,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub execution_time: Option<f64>,
    pub cpu_time: Option<f64>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// What a finished execution produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionResult {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
    pub timed_out: bool,
    pub execution_time: f64,
    pub cpu_time: f64,
}

/// A VM: its wire record plus what only the server may see.
#[derive(Debug, Clone, PartialEq)]
pub struct VmRow {
    pub user_id: i64,
    /// The runtime's sandbox while the VM runs.
    pub sandbox_id: Option<String>,
    /// The environment it was created with (replayed by clones and resumes). Variables staged
    /// later are never stored.
    pub env: BTreeMap<String, String>,
    pub record: VmRecord,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRow {
    pub user_id: i64,
    pub record: SnapshotRecord,
}
