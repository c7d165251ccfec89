//! Volume rules (spec §16, §6.12 to §6.14, docs/volumes.md): a volume belongs to one user and
//! lives in the runtime under its record id; checkpoints are read-only copies of it; a mount
//! puts the live volume (`rw`, one VM at a time) or a checkpoint (`ro`, any number) into a VM.
//!
//! Order of writes, so a `kill -9` leaves nothing the next start cannot explain: the runtime
//! object is made before its row and removed after it; `reconcile` deletes runtime objects
//! without a row.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::Utc;
use instavm_api::{CheckpointRecord, MountRecord, VmState, VolumeMountSpec, VolumeRecord};
use instavm_runtime::{
    check_mount_path, volume_path, CheckpointId, RuntimeError, SandboxId, VolumeId, VolumeMount,
};
use instavm_store::{CheckpointRow, MountRefused, MountRow, VmRow, VolumeRow};
use rand::RngCore;
use std::collections::HashSet;

pub const NOT_FOUND: &str = "volume not found";
pub const CHECKPOINT_NOT_FOUND: &str = "checkpoint not found";
const MAX_NAME_BYTES: usize = 128;
/// Smallest and largest quota: below 1 MiB a file system has no room for its own metadata.
pub const MIN_QUOTA: u64 = 1 << 20;
pub const MAX_QUOTA: u64 = 1 << 40;
/// Size of a volume that `create_if_missing` makes without a `size_gb`.
const DEFAULT_CREATED_GB: u64 = 1;
/// Most volumes one VM mounts.
pub const MAX_MOUNTS: usize = 16;

fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

fn runtime_volume(id: &str) -> ApiResult<VolumeId> {
    VolumeId::parse(id).ok_or_else(|| ApiError::Internal(format!("bad volume id {id:?}")))
}

fn runtime_checkpoint(id: &str) -> ApiResult<CheckpointId> {
    CheckpointId::parse(id).ok_or_else(|| ApiError::Internal(format!("bad checkpoint id {id:?}")))
}

pub fn check_name(name: &str) -> ApiResult<()> {
    check_label("volume name", name)
}

fn check_label(what: &str, name: &str) -> ApiResult<()> {
    if name.trim().is_empty()
        || name.len() > MAX_NAME_BYTES
        || name.contains(['\0', '/'])
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::Unprocessable(format!(
            "{what} must be 1 to {MAX_NAME_BYTES} bytes, without '/' or control characters, got {name:?}"
        )));
    }
    Ok(())
}

pub fn check_quota(quota: u64) -> ApiResult<()> {
    if !(MIN_QUOTA..=MAX_QUOTA).contains(&quota) {
        return Err(ApiError::Unprocessable(format!(
            "quota_bytes must be between {MIN_QUOTA} (1 MiB) and {MAX_QUOTA} (1 TiB), got {quota}"
        )));
    }
    Ok(())
}

/// A path inside a volume from a request: relative, without `..`.
pub fn file_path(raw: &str) -> ApiResult<String> {
    volume_path(raw).map_err(|e| ApiError::BadRequest(format!("invalid path {raw:?}: {e}")))
}

/// Runtime errors of the files API and mounts, worded for volumes.
pub fn runtime_error(err: RuntimeError) -> ApiError {
    match err {
        RuntimeError::QuotaExceeded(m) => {
            ApiError::PayloadTooLarge(format!("volume quota exceeded: {m}"))
        }
        RuntimeError::AlreadyExists(p) => ApiError::Conflict(format!(
            "{p} exists in the volume; send overwrite=true to replace it"
        )),
        RuntimeError::NotFound(_) => ApiError::NotFound(NOT_FOUND.into()),
        other => other.into(),
    }
}

pub fn record(v: &VolumeRow) -> VolumeRecord {
    VolumeRecord {
        id: v.id.clone(),
        volume_id: v.id.clone(),
        name: v.name.clone(),
        quota_bytes: v.quota_bytes,
        used_bytes: v.used_bytes,
        status: v.status.clone(),
        created_at: v.created_at,
        updated_at: v.updated_at,
    }
}

pub fn checkpoint_record(c: &CheckpointRow) -> CheckpointRecord {
    CheckpointRecord {
        id: c.id.clone(),
        checkpoint_id: c.id.clone(),
        volume_id: c.volume_id.clone(),
        name: c.name.clone(),
        status: c.status.clone(),
        size_bytes: c.size_bytes,
        created_at: c.created_at,
    }
}

/// The caller's volume (another user's is the same 404 as none).
pub async fn owned(state: &AppState, user_id: i64, id: &str) -> ApiResult<VolumeRow> {
    if !id.starts_with("vol_") {
        return Err(ApiError::NotFound(NOT_FOUND.into()));
    }
    let id = id.to_owned();
    state
        .db(move |s| s.get_user_volume(user_id, &id))
        .await?
        .ok_or_else(|| ApiError::NotFound(NOT_FOUND.into()))
}

pub async fn create(
    state: &AppState,
    user_id: i64,
    name: String,
    quota_bytes: u64,
) -> ApiResult<VolumeRow> {
    check_name(&name)?;
    check_quota(quota_bytes)?;
    let taken = {
        let name = name.clone();
        state
            .db(move |s| s.get_user_volume_by_name(user_id, &name))
            .await?
    };
    if taken.is_some() {
        return Err(ApiError::Conflict(format!(
            "a volume named {name:?} already exists"
        )));
    }
    let now = Utc::now();
    let row = VolumeRow {
        id: new_id("vol"),
        user_id,
        name,
        quota_bytes,
        used_bytes: 0,
        status: "ready".into(),
        created_at: now,
        updated_at: now,
    };
    let vol = runtime_volume(&row.id)?;
    state
        .runtime()
        .volume_create(&vol, quota_bytes)
        .await
        .map_err(runtime_error)?;
    let saved = row.clone();
    if let Err(err) = state.db(move |s| s.insert_volume(&saved)).await {
        // A create racing for the same name lost: take back what the runtime made.
        let _ = state.runtime().volume_delete(&vol).await;
        return Err(err);
    }
    tracing::info!(volume = %row.id, quota_bytes, "volume created");
    Ok(row)
}

/// Read the used size from the runtime and keep it in the record.
pub async fn refresh(state: &AppState, mut row: VolumeRow) -> ApiResult<VolumeRow> {
    let used = state
        .runtime()
        .volume_usage(&runtime_volume(&row.id)?)
        .await
        .map_err(runtime_error)?;
    row.used_bytes = used;
    let id = row.id.clone();
    state.db(move |s| s.set_volume_usage(&id, used)).await?;
    Ok(row)
}

pub async fn list(
    state: &AppState,
    user_id: i64,
    refresh_usage: bool,
) -> ApiResult<Vec<VolumeRow>> {
    let rows = state.db(move |s| s.list_user_volumes(user_id)).await?;
    if !refresh_usage {
        return Ok(rows);
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(refresh(state, row).await?);
    }
    Ok(out)
}

/// `PATCH`: a new name and/or quota. A quota below what the volume uses is refused.
pub async fn update(
    state: &AppState,
    row: VolumeRow,
    name: Option<String>,
    quota_bytes: Option<u64>,
) -> ApiResult<VolumeRow> {
    if name.is_none() && quota_bytes.is_none() {
        return Err(ApiError::Unprocessable(
            "send at least one of `name` and `quota_bytes`".into(),
        ));
    }
    if let Some(n) = &name {
        check_name(n)?;
    }
    let mut row = row;
    if let Some(q) = quota_bytes {
        check_quota(q)?;
        row = refresh(state, row).await?;
        if q < row.used_bytes {
            return Err(ApiError::Conflict(format!(
                "quota_bytes {q} is below the {} bytes the volume uses; delete files first",
                row.used_bytes
            )));
        }
        state
            .runtime()
            .volume_set_quota(&runtime_volume(&row.id)?, q)
            .await
            .map_err(runtime_error)?;
        row.quota_bytes = q;
    }
    if let Some(n) = name {
        row.name = n;
    }
    row.updated_at = Utc::now();
    let saved = row.clone();
    state.db(move |s| s.update_volume(&saved)).await?;
    Ok(row)
}

/// VMs that have the volume mounted now, as `vm (path)`.
fn holders(mounts: &[MountRow]) -> String {
    let names: Vec<String> = mounts
        .iter()
        .map(|m| format!("{} ({})", m.vm_id, m.mount_path))
        .collect();
    names.join(", ")
}

pub async fn delete(state: &AppState, row: VolumeRow) -> ApiResult<()> {
    let id = row.id.clone();
    let live = state.db(move |s| s.delete_unmounted_volume(&id)).await?;
    if !live.is_empty() {
        return Err(ApiError::Conflict(format!(
            "volume {} is mounted by {}; unmount it first",
            row.id,
            holders(&live)
        )));
    }
    match state
        .runtime()
        .volume_delete(&runtime_volume(&row.id)?)
        .await
    {
        Ok(()) | Err(RuntimeError::NotFound(_)) => {}
        // The row is gone; the next start's reconcile removes what is left.
        Err(e) => tracing::warn!(volume = %row.id, error = %e, "deleting a volume's storage"),
    }
    tracing::info!(volume = %row.id, "volume deleted");
    Ok(())
}

pub async fn checkpoint(
    state: &AppState,
    vol: &VolumeRow,
    name: Option<String>,
) -> ApiResult<CheckpointRow> {
    if let Some(n) = &name {
        check_label("checkpoint name", n)?;
    }
    let id = new_id("ckpt");
    let started = std::time::Instant::now();
    let size_bytes = state
        .runtime()
        .volume_checkpoint(&runtime_volume(&vol.id)?, &runtime_checkpoint(&id)?)
        .await
        .map_err(runtime_error)?;
    let row = CheckpointRow {
        id,
        volume_id: vol.id.clone(),
        name,
        status: "ready".into(),
        size_bytes,
        created_at: Utc::now(),
    };
    let saved = row.clone();
    let vol_id = vol.id.clone();
    state
        .db(move |s| {
            s.insert_checkpoint(&saved)?;
            s.set_volume_usage(&vol_id, size_bytes)
        })
        .await?;
    tracing::info!(volume = %vol.id, checkpoint = %row.id, size_bytes,
        us = started.elapsed().as_micros() as u64, "checkpoint taken");
    Ok(row)
}

pub async fn checkpoints(state: &AppState, vol: &VolumeRow) -> ApiResult<Vec<CheckpointRow>> {
    let id = vol.id.clone();
    state.db(move |s| s.list_checkpoints(&id)).await
}

/// A checkpoint of the volume by id, or `latest`: the newest.
pub async fn find_checkpoint(
    state: &AppState,
    vol: &VolumeRow,
    id: &str,
) -> ApiResult<CheckpointRow> {
    if id == "latest" {
        return checkpoints(state, vol)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ApiError::Conflict(format!(
                    "volume {} has no checkpoints, so `latest` names none; create one first",
                    vol.id
                ))
            });
    }
    let (vol_id, ckpt) = (vol.id.clone(), id.to_owned());
    state
        .db(move |s| s.get_checkpoint(&vol_id, &ckpt))
        .await?
        .ok_or_else(|| ApiError::NotFound(CHECKPOINT_NOT_FOUND.into()))
}

pub async fn delete_checkpoint(state: &AppState, vol: &VolumeRow, id: &str) -> ApiResult<String> {
    let ckpt = find_checkpoint(state, vol, id).await?;
    let vol_id = vol.id.clone();
    let using: Vec<MountRow> = state
        .db(move |s| s.live_mounts_of_volume(&vol_id))
        .await?
        .into_iter()
        .filter(|m| m.checkpoint_id.as_deref() == Some(ckpt.id.as_str()))
        .collect();
    if !using.is_empty() {
        return Err(ApiError::Conflict(format!(
            "checkpoint {} is mounted by {}; unmount it first",
            ckpt.id,
            holders(&using)
        )));
    }
    let id = ckpt.id.clone();
    state.db(move |s| s.delete_checkpoint(&id)).await?;
    match state
        .runtime()
        .volume_delete_checkpoint(&runtime_volume(&vol.id)?, &runtime_checkpoint(&ckpt.id)?)
        .await
    {
        Ok(()) | Err(RuntimeError::NotFound(_)) => {}
        Err(e) => tracing::warn!(checkpoint = %ckpt.id, error = %e, "deleting a checkpoint"),
    }
    Ok(ckpt.id)
}

/// A mount checked against the records, ready to be made.
#[derive(Debug, Clone)]
pub struct PlannedMount {
    pub volume: VolumeRow,
    pub mount_path: String,
    /// `Some` (resolved, never `latest`) for `ro`.
    pub checkpoint: Option<String>,
}

impl PlannedMount {
    fn mode(&self) -> &'static str {
        if self.checkpoint.is_some() {
            "ro"
        } else {
            "rw"
        }
    }
}

/// Turn one request entry (§6.12 body, or a `volumes` entry of a VM create) into a mount.
/// `create_if_missing` with a `name` makes the volume (`size_gb`, default 1) when the user has
/// none by that name.
pub async fn plan(
    state: &AppState,
    user_id: i64,
    spec: &VolumeMountSpec,
) -> ApiResult<PlannedMount> {
    let raw_path = spec
        .mount_path
        .as_deref()
        .ok_or_else(|| ApiError::Unprocessable("missing field `mount_path`".into()))?;
    let mount_path = check_mount_path(raw_path).map_err(ApiError::Unprocessable)?;
    let ro = match spec.mode.as_deref() {
        None | Some("") | Some("rw") => false,
        Some("ro") => true,
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "mode must be \"rw\" or \"ro\", got {other:?}"
            )))
        }
    };
    if !ro && spec.checkpoint_id.is_some() {
        return Err(ApiError::Unprocessable(
            "checkpoint_id is only allowed with mode \"ro\" (a rw mount is the live volume)".into(),
        ));
    }
    let volume = match (&spec.volume_id, &spec.name) {
        (Some(id), _) => owned(state, user_id, id).await?,
        (None, Some(name)) => {
            let n = name.clone();
            match state
                .db(move |s| s.get_user_volume_by_name(user_id, &n))
                .await?
            {
                Some(v) => v,
                None if spec.create_if_missing == Some(true) => {
                    let gb = spec.size_gb.unwrap_or(DEFAULT_CREATED_GB);
                    let quota = gb.checked_mul(1 << 30).ok_or_else(|| {
                        ApiError::Unprocessable(format!("size_gb {gb} is too large"))
                    })?;
                    create(state, user_id, name.clone(), quota).await?
                }
                None => {
                    return Err(ApiError::NotFound(format!(
                        "no volume named {name:?}; set create_if_missing to make it"
                    )))
                }
            }
        }
        (None, None) => {
            return Err(ApiError::Unprocessable(
                "a volume mount needs `volume_id` or `name`".into(),
            ))
        }
    };
    let checkpoint = if ro {
        let wanted = spec.checkpoint_id.as_deref().unwrap_or("latest");
        Some(find_checkpoint(state, &volume, wanted).await?.id)
    } else {
        None
    };
    Ok(PlannedMount {
        volume,
        mount_path,
        checkpoint,
    })
}

/// Every entry of a VM create's `volumes`, checked before the VM boots (early 4xx answers;
/// the rw holder is checked again when the mount is recorded).
pub async fn plan_all(
    state: &AppState,
    user_id: i64,
    specs: &[VolumeMountSpec],
) -> ApiResult<Vec<PlannedMount>> {
    if specs.len() > MAX_MOUNTS {
        return Err(ApiError::Unprocessable(format!(
            "at most {MAX_MOUNTS} volumes per VM, got {}",
            specs.len()
        )));
    }
    let mut out: Vec<PlannedMount> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        // Name the entry in what is wrong with its input.
        let p = plan(state, user_id, spec).await.map_err(|e| match e {
            ApiError::Unprocessable(m) => ApiError::Unprocessable(format!("volumes[{i}]: {m}")),
            other => other,
        })?;
        if out.iter().any(|o| o.mount_path == p.mount_path) {
            return Err(ApiError::Unprocessable(format!(
                "two volumes at {}",
                p.mount_path
            )));
        }
        if p.checkpoint.is_none()
            && out
                .iter()
                .any(|o| o.volume.id == p.volume.id && o.checkpoint.is_none())
        {
            return Err(ApiError::Conflict(format!(
                "volume {} is listed rw twice; a volume is mounted rw once",
                p.volume.id
            )));
        }
        if p.checkpoint.is_none() {
            let id = p.volume.id.clone();
            let live = state.db(move |s| s.live_mounts_of_volume(&id)).await?;
            if let Some(h) = live.iter().find(|m| m.mode == "rw") {
                return Err(held_by(&p.volume.id, &h.vm_id));
            }
        }
        out.push(p);
    }
    Ok(out)
}

fn held_by(volume: &str, vm: &str) -> ApiError {
    ApiError::Conflict(format!(
        "volume {volume} is mounted rw by VM {vm}; a volume can be mounted rw by one VM at a time (mount a checkpoint ro instead)"
    ))
}

/// Mounts a VM booted from a snapshot gets: those the snapshot's VM had (its records outlive
/// it). A `ro` mount comes back as it was while its checkpoint exists; a `rw` one when its
/// volume exists and no other VM holds it (a clone of a running VM does not get its rw
/// volumes). What is skipped is logged.
pub async fn inherited(state: &AppState, user_id: i64, from_vm: Option<&str>) -> Vec<PlannedMount> {
    let Some(vm) = from_vm.map(str::to_owned) else {
        return Vec::new();
    };
    let rows = match state.db(move |s| s.mounts_of_vm(&vm)).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "reading the mounts of a snapshot's VM");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for m in rows {
        let spec = VolumeMountSpec {
            volume_id: Some(m.volume_id.clone()),
            mount_path: Some(m.mount_path.clone()),
            mode: Some(m.mode.clone()),
            checkpoint_id: m.checkpoint_id.clone(),
            ..VolumeMountSpec::default()
        };
        match plan_all(state, user_id, std::slice::from_ref(&spec)).await {
            Ok(mut p) => out.append(&mut p),
            Err(e) => tracing::info!(volume = %m.volume_id, path = %m.mount_path, reason = %e,
                "not mounting a volume again in a VM booted from a snapshot"),
        }
    }
    out
}

/// Record the mount, then make it in the running sandbox (the record goes if that fails).
pub async fn attach(
    state: &AppState,
    vm_id: &str,
    sandbox: &SandboxId,
    p: &PlannedMount,
) -> ApiResult<MountRow> {
    let row = MountRow {
        vm_id: vm_id.to_owned(),
        volume_id: p.volume.id.clone(),
        mount_path: p.mount_path.clone(),
        mode: p.mode().into(),
        checkpoint_id: p.checkpoint.clone(),
        created_at: Utc::now(),
    };
    let saved = row.clone();
    match state.db(move |s| s.add_mount(&saved)).await? {
        Ok(()) => {}
        Err(MountRefused::HeldBy(vm)) => return Err(held_by(&p.volume.id, &vm)),
        Err(MountRefused::VolumeGone) => return Err(ApiError::NotFound(NOT_FOUND.into())),
        Err(MountRefused::PathTaken) => {
            return Err(ApiError::Conflict(format!(
                "VM {vm_id} has a volume mounted at {} already",
                p.mount_path
            )))
        }
    }
    let mount = VolumeMount {
        volume: runtime_volume(&p.volume.id)?,
        checkpoint: p
            .checkpoint
            .as_deref()
            .map(runtime_checkpoint)
            .transpose()?,
        mount_path: p.mount_path.clone(),
    };
    let started = std::time::Instant::now();
    if let Err(err) = state.runtime().mount_volume(sandbox, &mount).await {
        let (vm, path) = (vm_id.to_owned(), p.mount_path.clone());
        if let Err(e) = state.db(move |s| s.delete_mount(&vm, &path)).await {
            tracing::error!(error = %e, "removing the record of a failed mount");
        }
        return Err(match err {
            RuntimeError::AlreadyExists(p) | RuntimeError::WrongFileType(p) => ApiError::Conflict(
                format!("cannot mount at {p}: something other than an empty directory is there"),
            ),
            other => other.into(),
        });
    }
    tracing::info!(vm_id, volume = %p.volume.id, path = %p.mount_path, mode = p.mode(),
        us = started.elapsed().as_micros() as u64, "volume mounted");
    Ok(row)
}

fn vm_sandbox(vm: &VmRow) -> ApiResult<SandboxId> {
    if vm.record.status != VmState::Active {
        return Err(ApiError::Conflict(format!(
            "VM {} is {}; volumes are mounted into active VMs",
            vm.record.vm_id,
            vm.record.status.as_str()
        )));
    }
    vm.sandbox_id
        .as_deref()
        .and_then(SandboxId::parse)
        .ok_or_else(|| ApiError::Internal(format!("VM {} has no sandbox", vm.record.vm_id)))
}

/// §6.12: mount into a running VM.
pub async fn mount(state: &AppState, vm: &VmRow, spec: &VolumeMountSpec) -> ApiResult<MountRecord> {
    let sandbox = vm_sandbox(vm)?;
    let p = plan(state, vm.user_id, spec).await?;
    let vm_id = vm.record.vm_id.clone();
    if state.db(move |s| s.mounts_of_vm(&vm_id)).await?.len() >= MAX_MOUNTS {
        return Err(ApiError::Forbidden(format!(
            "VM {} has {MAX_MOUNTS} volumes mounted, the most one VM may have",
            vm.record.vm_id
        )));
    }
    let row = attach(state, &vm.record.vm_id, &sandbox, &p).await?;
    Ok(mount_record(&row, &p.volume.name))
}

/// §6.14: the mount at `mount_path` of this volume leaves the VM.
pub async fn unmount(
    state: &AppState,
    vm: &VmRow,
    volume_id: &str,
    mount_path: &str,
) -> ApiResult<MountRow> {
    let path = check_mount_path(mount_path).map_err(ApiError::Unprocessable)?;
    let vm_id = vm.record.vm_id.clone();
    let rows = state.db(move |s| s.mounts_of_vm(&vm_id)).await?;
    let row = rows
        .into_iter()
        .find(|m| m.mount_path == path && m.volume_id == volume_id)
        .filter(|_| matches!(vm.record.status, VmState::Active | VmState::Creating))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "volume {volume_id} is not mounted at {path} in VM {}",
                vm.record.vm_id
            ))
        })?;
    let sandbox = vm_sandbox(vm)?;
    match state.runtime().unmount_volume(&sandbox, &path).await {
        // Unmounted from inside already (the VM's root can): the record goes all the same.
        Ok(()) | Err(RuntimeError::FileNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let (vm_id, p) = (vm.record.vm_id.clone(), path.clone());
    state.db(move |s| s.delete_mount(&vm_id, &p)).await?;
    tracing::info!(vm_id = %vm.record.vm_id, volume = volume_id, path, "volume unmounted");
    Ok(row)
}

pub fn mount_record(m: &MountRow, volume_name: &str) -> MountRecord {
    MountRecord {
        vm_id: m.vm_id.clone(),
        volume_id: m.volume_id.clone(),
        volume_name: volume_name.to_owned(),
        mount_path: m.mount_path.clone(),
        mode: m.mode.clone(),
        checkpoint_id: m.checkpoint_id.clone(),
        status: "mounted".into(),
        created_at: m.created_at,
    }
}

/// §6.13: what the VM has mounted (nothing once it is no longer up).
pub async fn mounts(state: &AppState, vm: &VmRow) -> ApiResult<Vec<MountRecord>> {
    if !matches!(vm.record.status, VmState::Active | VmState::Creating) {
        return Ok(Vec::new());
    }
    let vm_id = vm.record.vm_id.clone();
    let user_id = vm.user_id;
    state
        .db(move |s| {
            let mut out = Vec::new();
            for m in s.mounts_of_vm(&vm_id)? {
                let name = s
                    .get_user_volume(user_id, &m.volume_id)?
                    .map(|v| v.name)
                    .unwrap_or_default();
                out.push(mount_record(&m, &name));
            }
            Ok(out)
        })
        .await
}

/// After a restart: the runtime's volumes and checkpoints that have no record (a crash between
/// the two writes) are deleted.
pub async fn reconcile(state: &AppState) -> ApiResult<usize> {
    let held = state.runtime().volume_list().await?;
    let known: Vec<(String, Vec<String>)> = state.db(|s| s.volume_ids()).await?;
    let known_vols: HashSet<&str> = known.iter().map(|(v, _)| v.as_str()).collect();
    let known_ckpts: HashSet<&str> = known
        .iter()
        .flat_map(|(_, c)| c.iter().map(String::as_str))
        .collect();
    let mut cleaned = 0;
    for (vol, ckpts) in held {
        if !known_vols.contains(vol.as_str()) {
            if let Err(e) = state.runtime().volume_delete(&vol).await {
                tracing::warn!(volume = %vol, error = %e, "removing an orphan volume");
            }
            cleaned += 1;
            continue;
        }
        for c in ckpts.iter().filter(|c| !known_ckpts.contains(c.as_str())) {
            if let Err(e) = state.runtime().volume_delete_checkpoint(&vol, c).await {
                tracing::warn!(checkpoint = %c, error = %e, "removing an orphan checkpoint");
            }
            cleaned += 1;
        }
    }
    Ok(cleaned)
}
