//! Volumes (spec §16), their checkpoints and files, and VM mounts (§6.12 to §6.14).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A volume as answered by §16.1 to §16.4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub id: String,
    /// Same as `id`.
    pub volume_id: String,
    pub name: String,
    pub quota_bytes: u64,
    /// As of the last refresh (`refresh_usage=true`, a checkpoint, an upload).
    pub used_bytes: u64,
    /// `ready`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/volumes`. Unknown keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateVolumeRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub quota_bytes: Option<u64>,
}

/// `PATCH /v1/volumes/{id}`: at least one field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateVolumeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
}

/// `?refresh_usage=` of §16.2 and §16.3.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshQuery {
    #[serde(default)]
    pub refresh_usage: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteVolumeResponse {
    pub success: bool,
    pub volume_id: String,
    pub status: String,
}

/// A checkpoint: a read-only copy of the volume at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub id: String,
    pub checkpoint_id: String,
    pub volume_id: String,
    pub name: Option<String>,
    /// `ready`.
    pub status: String,
    /// What the volume referenced when it was taken.
    pub size_bytes: u64,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/volumes/{id}/checkpoints`: `{}` or a name; unknown keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateCheckpointRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteCheckpointResponse {
    pub success: bool,
    pub volume_id: String,
    pub checkpoint_id: String,
    pub status: String,
}

/// Multipart field names of `POST /v1/volumes/{id}/files/upload`.
pub mod volume_upload_fields {
    pub const FILE: &str = "file";
    pub const PATH: &str = "path";
    pub const OVERWRITE: &str = "overwrite";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeUploadResponse {
    pub success: bool,
    pub volume_id: String,
    pub path: String,
    pub size: u64,
}

/// `POST /v1/volumes/{id}/files/download` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeDownloadRequest {
    #[serde(default)]
    pub path: Option<String>,
}

/// The download answer: `content` is base64 (streamed by the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeDownloadResponse {
    pub path: String,
    pub filename: String,
    pub content: String,
    pub size: u64,
}

/// `GET /v1/volumes/{id}/files` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListFilesQuery {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub recursive: Option<bool>,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// One entry of a volume's file list (regular files only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFile {
    pub path: String,
    pub size: u64,
    pub modified_at: DateTime<Utc>,
}

/// `DELETE /v1/volumes/{id}/files?path=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathQuery {
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteFileResponse {
    pub success: bool,
    pub volume_id: String,
    pub path: String,
}

/// One entry of `volumes` in `POST /v1/vms`: the CLI form (`volume_id`) or the manifest form
/// (`name`, with `create_if_missing` and `size_gb`). `null` is the same as missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMountSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub mount_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Sent as `null` for `rw` by the official CLI.
    #[serde(default)]
    pub checkpoint_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_if_missing: Option<bool>,
}

/// `POST /v1/vms/{id}/volumes` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountVolumeRequest {
    #[serde(default)]
    pub volume_id: Option<String>,
    #[serde(default)]
    pub mount_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_id: Option<String>,
}

/// `DELETE /v1/vms/{id}/volumes/{volume_id}` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmountQuery {
    #[serde(default)]
    pub mount_path: Option<String>,
    #[serde(default)]
    pub wait: Option<bool>,
}

/// A volume mounted in a VM (§6.12 answer, §6.13 entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    pub vm_id: String,
    pub volume_id: String,
    pub volume_name: String,
    pub mount_path: String,
    /// `rw` or `ro`.
    pub mode: String,
    /// The checkpoint a `ro` mount shows (resolved: never `latest`); `null` for `rw`.
    pub checkpoint_id: Option<String>,
    /// `mounted`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmountResponse {
    pub success: bool,
    pub vm_id: String,
    pub volume_id: String,
    pub mount_path: String,
    pub status: String,
}
