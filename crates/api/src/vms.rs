//! VMs (spec §6 without the volume routes) and the snapshots taken from them (§6.11, §7.2 to
//! §7.4). A VM is the central object: every session runs on one, and a VM made with
//! `POST /v1/vms` has a session, so `/execute` and the file routes work on it.

use crate::Metadata;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Lifecycle of a VM record. `creating` always ends in `active` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    Creating,
    Active,
    /// Its disk is kept in a snapshot and its processes are stopped; resume boots a new VM.
    Suspended,
    Terminated,
    /// The create (or resume) did not succeed; `end_reason` says why.
    Failed,
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Creating => "creating",
            VmState::Active => "active",
            VmState::Suspended => "suspended",
            VmState::Terminated => "terminated",
            VmState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "creating" => VmState::Creating,
            "active" => VmState::Active,
            "suspended" => VmState::Suspended,
            "terminated" => VmState::Terminated,
            "failed" => VmState::Failed,
            _ => return None,
        })
    }

    /// Listed by `GET /v1/vms` (the CLI's `ls` shows active, running and creating VMs).
    pub fn is_running(self) -> bool {
        matches!(self, VmState::Creating | VmState::Active)
    }
}

/// A VM record: the answer of every VM route and the items of both listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    pub vm_id: String,
    /// Same as `vm_id` (the official deploy code reads either).
    pub id: String,
    /// The session bound to this VM (`/execute` takes it).
    pub session_id: String,
    pub status: VmState,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    /// Why the VM failed, was terminated or suspended.
    #[serde(default)]
    pub end_reason: Option<String>,
    pub memory_mb: u32,
    pub vcpu_count: u32,
    pub vm_lifetime_seconds: u64,
    #[serde(default)]
    pub metadata: Metadata,
    pub image_variant: String,
    /// The snapshot it booted from.
    #[serde(default)]
    pub snapshot_id: Option<String>,
    #[serde(default)]
    pub auto_suspend: bool,
    #[serde(default)]
    pub auto_resume: bool,
    #[serde(default)]
    pub snapshot_on_terminate: bool,
    #[serde(default)]
    pub snapshot_name: Option<String>,
    /// Stored for the vault feature; not used yet.
    #[serde(default)]
    pub vault_ids: Vec<String>,
    /// No SSH gateway yet.
    #[serde(default)]
    pub ssh_host: Option<String>,
    /// While suspended: the snapshot a resume boots from.
    #[serde(default)]
    pub suspend_snapshot_id: Option<String>,
    /// Once resumed: the VM that took over its session.
    #[serde(default)]
    pub resumed_vm_id: Option<String>,
}

/// Query of the routes that may wait (`?wait=true|false`; the SDK always sends it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
}

/// `POST /v1/vms` (spec §6.1 table). Unknown keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateVmRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_lifetime_seconds: Option<u64>,
    /// `standard` (the default) is the only variant this server serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Attach to this session's VM, or respawn one for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Volumes mounted once the VM is up (spec §6.1 table, §25.10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<crate::VolumeMountSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_suspend: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_resume: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// The VM's egress policy (spec §2), applied before the create answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_policy: Option<crate::EgressPolicyRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_on_terminate: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_name: Option<String>,
    /// Environment of the VM's processes (as for a session start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
}

/// `PATCH /v1/vms/{vm_id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateVmRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_on_terminate: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_suspend: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_resume: Option<bool>,
}

/// `POST /v1/vms/{vm_id}/stage-env`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageEnvRequest {
    pub entries: Vec<EnvEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvEntry {
    pub env_name: String,
    pub value: String,
}

/// The answer of a stage-env: the names staged, never the values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageEnvResponse {
    pub vm_id: String,
    pub status: String,
    pub staged: Vec<String>,
}

/// `POST /v1/vms/{vm_id}/clone`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneVmRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_name: Option<String>,
}

/// `POST /v1/vms/{vm_id}/snapshot`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotVmRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Lifecycle of a snapshot record; only `ready` ones can be booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotState {
    Creating,
    Ready,
    Failed,
}

impl SnapshotState {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotState::Creating => "creating",
            SnapshotState::Ready => "ready",
            SnapshotState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "creating" => SnapshotState::Creating,
            "ready" => SnapshotState::Ready,
            "failed" => SnapshotState::Failed,
            _ => return None,
        })
    }
}

/// A snapshot of a VM's disk (its writable layer): `GET /v1/snapshots/{id}` and the listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: String,
    /// Same as `id` (template publish reads `snapshot_id`).
    pub snapshot_id: String,
    pub name: String,
    pub status: SnapshotState,
    /// Always `user`: snapshots taken from VMs.
    #[serde(rename = "type")]
    pub snapshot_type: String,
    pub created_at: DateTime<Utc>,
    pub size_bytes: u64,
    /// The VM it was taken from (it may be gone: snapshots outlive their VM).
    #[serde(default)]
    pub vm_id: Option<String>,
    /// The snapshot that VM booted from, if any.
    #[serde(default)]
    pub parent_snapshot_id: Option<String>,
    /// `cow` (a btrfs snapshot, O(1)) or `copy` (the tmpfs fallback copies the files).
    pub storage: String,
    #[serde(default)]
    pub error: Option<String>,
    pub is_public: bool,
}

/// Query of `GET /v1/snapshots`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotListQuery {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub snapshot_type: Option<String>,
}

/// `DELETE /v1/snapshots/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteSnapshotResponse {
    pub success: bool,
    pub snapshot_id: String,
    pub status: String,
}
