//! Snapshot rules: a snapshot is a VM's disk (its writable layer) at one moment, kept by the
//! runtime under the record's id. It outlives its VM, and deleting it never affects a VM booted
//! from it (that VM has its own copy-on-write layer).

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::Utc;
use instavm_api::{SnapshotRecord, SnapshotState, VmState};
use instavm_runtime::{RuntimeError, SandboxId, SnapshotId};
use instavm_store::{SnapshotRow, VmRow};
use rand::RngCore;
use std::collections::HashSet;

pub const NOT_FOUND: &str = "snapshot not found";
const MAX_NAME_BYTES: usize = 256;

fn new_snapshot_id() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("snap_{}", hex::encode(bytes))
}

pub fn check_name(name: &str) -> ApiResult<()> {
    if name.len() > MAX_NAME_BYTES || name.contains('\0') {
        return Err(ApiError::Unprocessable(format!(
            "snapshot name must be at most {MAX_NAME_BYTES} bytes without NUL"
        )));
    }
    Ok(())
}

pub async fn owned(state: &AppState, user_id: i64, id: &str) -> ApiResult<SnapshotRow> {
    if !id.starts_with("snap_") {
        return Err(ApiError::NotFound(NOT_FOUND.into()));
    }
    let id = id.to_owned();
    state
        .db(move |s| s.get_user_snapshot(user_id, &id))
        .await?
        .ok_or_else(|| ApiError::NotFound(NOT_FOUND.into()))
}

/// Record a `creating` snapshot of a running VM.
async fn begin(state: &AppState, vm: &VmRow, name: String) -> ApiResult<SnapshotRow> {
    check_name(&name)?;
    if vm.record.status != VmState::Active {
        return Err(ApiError::Conflict(format!(
            "VM {} is {}; only an active VM can be snapshotted",
            vm.record.vm_id,
            vm.record.status.as_str()
        )));
    }
    let id = new_snapshot_id();
    let row = SnapshotRow {
        user_id: vm.user_id,
        record: SnapshotRecord {
            id: id.clone(),
            snapshot_id: id,
            name,
            status: SnapshotState::Creating,
            snapshot_type: "user".into(),
            created_at: Utc::now(),
            size_bytes: 0,
            vm_id: Some(vm.record.vm_id.clone()),
            parent_snapshot_id: vm.record.snapshot_id.clone(),
            storage: String::new(),
            error: None,
            is_public: false,
        },
    };
    let saved = row.clone();
    state.db(move |s| s.save_snapshot(&saved)).await?;
    Ok(row)
}

/// Ask the runtime for the snapshot and record the outcome.
async fn finish(
    state: &AppState,
    sandbox: SandboxId,
    mut row: SnapshotRow,
) -> ApiResult<SnapshotRecord> {
    let id = SnapshotId::parse(&row.record.id)
        .ok_or_else(|| ApiError::Internal(format!("bad snapshot id {}", row.record.id)))?;
    let started = std::time::Instant::now();
    let taken = state.runtime().snapshot(&sandbox, &id).await;
    let result = match taken {
        Ok(info) => {
            row.record.status = SnapshotState::Ready;
            row.record.size_bytes = info.size_bytes;
            row.record.storage = if info.copied { "copy" } else { "cow" }.into();
            tracing::info!(snapshot = %id, vm_id = ?row.record.vm_id, bytes = info.size_bytes,
                copied = info.copied, us = started.elapsed().as_micros() as u64, "snapshot taken");
            Ok(())
        }
        Err(err) => {
            let err = ApiError::from(err);
            row.record.status = SnapshotState::Failed;
            row.record.error = Some(err.detail());
            Err(err)
        }
    };
    let saved = row.clone();
    state.db(move |s| s.save_snapshot(&saved)).await?;
    result.map(|()| row.record)
}

fn sandbox_of(vm: &VmRow) -> ApiResult<SandboxId> {
    vm.sandbox_id
        .as_deref()
        .and_then(SandboxId::parse)
        .ok_or_else(|| ApiError::Internal(format!("VM {} has no sandbox", vm.record.vm_id)))
}

/// Snapshot a running VM and wait for it.
pub async fn take(state: &AppState, vm: &VmRow, name: String) -> ApiResult<SnapshotRecord> {
    let row = begin(state, vm, name).await?;
    let sandbox = sandbox_of(vm)?;
    let task_state = state.clone();
    tokio::spawn(async move { finish(&task_state, sandbox, row).await })
        .await
        .map_err(ApiError::internal)?
}

/// `POST /v1/vms/{id}/snapshot`: with `wait=false`, answers the `creating` record at once.
pub async fn take_from_request(
    state: &AppState,
    vm: &VmRow,
    name: String,
    wait: bool,
) -> ApiResult<SnapshotRecord> {
    if wait {
        return take(state, vm, name).await;
    }
    let row = begin(state, vm, name).await?;
    let sandbox = sandbox_of(vm)?;
    let answer = row.record.clone();
    let task_state = state.clone();
    tokio::spawn(async move {
        if let Err(err) = finish(&task_state, sandbox, row).await {
            tracing::warn!(error = %err, "background snapshot failed");
        }
    });
    Ok(answer)
}

pub async fn list(state: &AppState, user_id: i64) -> ApiResult<Vec<SnapshotRecord>> {
    let rows = state
        .db(move |s| s.list_user_snapshots(user_id, crate::vms::MAX_LISTED))
        .await?;
    Ok(rows.into_iter().map(|r| r.record).collect())
}

pub async fn delete(state: &AppState, row: SnapshotRow) -> ApiResult<()> {
    if row.record.status == SnapshotState::Creating {
        return Err(ApiError::Conflict(format!(
            "snapshot {} is still being created",
            row.record.id
        )));
    }
    // A suspended VM's disk lives only in its suspend snapshot.
    let (user_id, snap_id) = (row.user_id, row.record.id.clone());
    let holder = state
        .db(move |s| s.vms_with_status(VmState::Suspended))
        .await?
        .into_iter()
        .find(|vm| {
            vm.user_id == user_id && vm.record.suspend_snapshot_id.as_deref() == Some(&snap_id)
        });
    if let Some(vm) = holder {
        return Err(ApiError::Conflict(format!(
            "snapshot {} holds the disk of suspended VM {}; resume or delete the VM first",
            row.record.id, vm.record.vm_id
        )));
    }
    if let Some(id) = SnapshotId::parse(&row.record.id) {
        match state.runtime().delete_snapshot(&id).await {
            Ok(()) | Err(RuntimeError::NotFound(_)) => {}
            // A failed snapshot may have nothing in the runtime, and a backend without
            // snapshots never made one.
            Err(RuntimeError::Unsupported { .. }) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let id = row.record.id.clone();
    state.db(move |s| s.delete_snapshot(&id)).await?;
    Ok(())
}

/// After a restart: snapshots a crash left `creating` become `failed` (whatever the runtime
/// holds for them is removed), and runtime snapshots without a record are removed. Returns how
/// many were cleaned.
pub async fn reconcile(state: &AppState) -> ApiResult<usize> {
    let mut cleaned = 0;
    for mut row in state
        .db(|s| s.snapshots_with_status(SnapshotState::Creating))
        .await?
    {
        if let Some(id) = SnapshotId::parse(&row.record.id) {
            let _ = state.runtime().delete_snapshot(&id).await;
        }
        row.record.status = SnapshotState::Failed;
        row.record.error = Some(crate::vms::INTERRUPTED.into());
        state.db(move |s| s.save_snapshot(&row)).await?;
        cleaned += 1;
    }
    // Snapshots are the platform's (`snap_*`) and tape checkpoints (`tck_*`).
    let mut known: HashSet<String> = state.db(|s| s.snapshot_ids()).await?.into_iter().collect();
    known.extend(state.db(|s| s.tape_checkpoint_ids()).await?);
    for id in state.runtime().list_snapshots().await? {
        if !known.contains(id.as_str()) {
            tracing::info!(snapshot = %id, "removing a snapshot no record owns");
            if let Err(err) = state.runtime().delete_snapshot(&id).await {
                tracing::warn!(snapshot = %id, error = %err, "removing a stray snapshot failed");
            }
            cleaned += 1;
        }
    }
    Ok(cleaned)
}
