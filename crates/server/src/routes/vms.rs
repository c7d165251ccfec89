//! VMs (spec §6 without the volume routes): handlers parse, call `crate::vms`, answer.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use crate::{sessions, snapshots, vms, volumes};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use instavm_api::{
    CloneVmRequest, CreateVmRequest, SessionState, SnapshotRecord, SnapshotVmRequest,
    StageEnvRequest, StageEnvResponse, StartSessionRequest, UpdateVmRequest, VmRecord, WaitQuery,
};
use instavm_runtime::SnapshotId;
use std::collections::BTreeMap;

/// `/v1/vms` lists running VMs, `/v1/vms/` every record (spec §25.6: the slash matters).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/vms", get(list_running).post(create))
        .route("/v1/vms/", get(list_all))
        .route("/v1/vms/{vm_id}", get(get_one).patch(update).delete(delete))
        .route("/v1/vms/{vm_id}/suspend", post(suspend))
        .route("/v1/vms/{vm_id}/resume", post(resume))
        .route("/v1/vms/{vm_id}/stage-env", post(stage_env))
        .route("/v1/vms/{vm_id}/clone", post(clone_vm))
        .route("/v1/vms/{vm_id}/snapshot", post(snapshot))
}

/// A record as answered: with the SSH gateway's host (`ssh <vm_id>@<ssh_host>`), when the
/// server runs one.
fn answer(state: &AppState, mut record: VmRecord) -> Json<VmRecord> {
    if record.ssh_host.is_none() {
        record.ssh_host = state.ssh_host();
    }
    Json(record)
}

fn shown(state: &AppState, records: Vec<VmRecord>) -> Vec<VmRecord> {
    records.into_iter().map(|r| answer(state, r).0).collect()
}

/// The official SDK always sends `wait`; a missing one means the SDK default, true.
fn wait(q: &WaitQuery) -> bool {
    q.wait.unwrap_or(true)
}

async fn create(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiQuery(q): ApiQuery<WaitQuery>,
    ApiJson(req): ApiJson<CreateVmRequest>,
) -> ApiResult<Json<VmRecord>> {
    Ok(answer(
        &state,
        create_vm(&state, user.id, &req, wait(&q)).await?,
    ))
}

/// `POST /v1/vms` for `user_id`: check the request, then start (or attach to) a VM. Also what
/// workload runs boot their VMs with.
pub(crate) async fn create_vm(
    state: &AppState,
    user_id: i64,
    req: &CreateVmRequest,
    wait: bool,
) -> ApiResult<VmRecord> {
    match req.image_variant.as_deref() {
        None | Some("standard") => {}
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "image_variant {other:?} is not available on this server; only \"standard\" is"
            )))
        }
    }
    let egress_policy = req
        .egress_policy
        .as_ref()
        .map(crate::egress::from_request)
        .transpose()?;
    if let Some(name) = &req.snapshot_name {
        snapshots::check_name(name)?;
    }
    check_vault_ids(req.vault_ids.as_ref())?;
    let limits = state.limits_for(user_id).await?;
    let mut spec = super::sessions::sandbox_spec(
        state,
        &limits,
        &StartSessionRequest {
            api_key: None,
            vm_lifetime_seconds: req.vm_lifetime_seconds,
            memory_mb: req.memory_mb,
            vcpu_count: req.vcpu_count,
            metadata: None,
            env: req.env.clone(),
        },
    )?;
    let metadata = req.metadata.clone().unwrap_or_default();
    super::sessions::check_metadata(&metadata)?;
    let mut mounts =
        volumes::plan_all(state, user_id, req.volumes.as_deref().unwrap_or_default()).await?;
    if let Some(snap) = &req.snapshot_id {
        let row = snapshots::owned(state, user_id, snap).await?;
        if !vms::bootable(row.record.status) {
            return Err(ApiError::Conflict(format!(
                "snapshot {snap} is {} and cannot be booted; only ready snapshots can",
                row.record.status.as_str()
            )));
        }
        spec.from_snapshot = SnapshotId::parse(snap);
        // The snapshot's VM's volumes, where the request puts nothing at their path.
        for p in volumes::inherited(state, user_id, row.record.vm_id.as_deref()).await {
            if !mounts.iter().any(|m| m.mount_path == p.mount_path) {
                mounts.push(p);
            }
        }
    }
    state.require_ready()?;
    let new = vms::NewVm {
        user_id,
        spec,
        metadata,
        snapshot_id: req.snapshot_id.clone(),
        auto_suspend: req.auto_suspend.unwrap_or(false),
        auto_resume: req.auto_resume.unwrap_or(false),
        snapshot_on_terminate: req.snapshot_on_terminate.unwrap_or(false),
        snapshot_name: req.snapshot_name.clone(),
        vault_ids: crate::vault::check_vault_ids(
            state,
            user_id,
            req.vault_ids.as_deref().unwrap_or_default(),
        )
        .await?,
        session_id: None,
        mounts,
        egress_policy,
    };
    if let Some(sid) = &req.session_id {
        let session = sessions::owned(state, user_id, sid).await?;
        // Attaching to a running (or suspended) session's VM starts nothing new.
        if !matches!(
            session.status,
            SessionState::Active | SessionState::Suspended
        ) {
            check_active_limit(state, user_id).await?;
        }
        return vms::for_session(state, session, new, wait).await;
    }
    check_active_limit(state, user_id).await?;
    vms::create(state, new, wait).await
}

/// Most vault ids one VM may name.
const MAX_VAULT_IDS: usize = 64;

fn check_vault_ids(ids: Option<&Vec<String>>) -> ApiResult<()> {
    match ids {
        Some(ids) if ids.len() > MAX_VAULT_IDS => Err(ApiError::Unprocessable(format!(
            "vault_ids has {} entries; at most {MAX_VAULT_IDS} are allowed",
            ids.len()
        ))),
        Some(ids) if ids.iter().any(|i| i.is_empty() || i.len() > 128) => Err(
            ApiError::Unprocessable("vault_ids entries must be 1 to 128 bytes".into()),
        ),
        _ => Ok(()),
    }
}

async fn check_active_limit(state: &AppState, user_id: i64) -> ApiResult<()> {
    let limit = state
        .limits_for(user_id)
        .await?
        .max_active_sessions_per_user;
    if state.db(move |s| s.count_active_sessions(user_id)).await? >= limit {
        return Err(ApiError::Forbidden(format!(
            "active session limit reached: at most {limit} active sessions per user; kill one or wait for it to expire"
        )));
    }
    Ok(())
}

async fn list_running(
    State(state): State<AppState>,
    Principal(user): Principal,
) -> ApiResult<Json<Vec<VmRecord>>> {
    Ok(Json(shown(&state, vms::list(&state, user.id, true).await?)))
}

async fn list_all(
    State(state): State<AppState>,
    Principal(user): Principal,
) -> ApiResult<Json<Vec<VmRecord>>> {
    Ok(Json(shown(
        &state,
        vms::list(&state, user.id, false).await?,
    )))
}

async fn get_one(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(vm_id): ApiPath,
) -> ApiResult<Json<VmRecord>> {
    Ok(answer(
        &state,
        vms::owned(&state, user.id, &vm_id).await?.record,
    ))
}

async fn update(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(vm_id): ApiPath,
    ApiJson(req): ApiJson<UpdateVmRequest>,
) -> ApiResult<Json<VmRecord>> {
    if let Some(name) = &req.snapshot_name {
        snapshots::check_name(name)?;
    }
    check_vault_ids(req.vault_ids.as_ref())?;
    let mut req = req;
    if let Some(ids) = &req.vault_ids {
        req.vault_ids = Some(crate::vault::check_vault_ids(&state, user.id, ids).await?);
    }
    let row = vms::owned(&state, user.id, &vm_id).await?;
    Ok(answer(&state, vms::update(&state, row, req).await?))
}

async fn delete(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(vm_id): ApiPath,
) -> ApiResult<Json<VmRecord>> {
    let row = vms::owned(&state, user.id, &vm_id).await?;
    Ok(answer(&state, vms::delete(&state, row).await?))
}

async fn suspend(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(vm_id): ApiPath,
) -> ApiResult<Json<VmRecord>> {
    let row = vms::owned(&state, user.id, &vm_id).await?;
    Ok(answer(
        &state,
        vms::suspend(&state, row, sessions::reason::SUSPENDED).await?,
    ))
}

async fn resume(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(vm_id): ApiPath,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Json<VmRecord>> {
    state.require_ready()?;
    let row = vms::owned(&state, user.id, &vm_id).await?;
    // A resumed VM counts again; a suspended one did not.
    check_active_limit(&state, user.id).await?;
    Ok(answer(&state, vms::resume(&state, row, wait(&q)).await?))
}

async fn stage_env(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(vm_id): ApiPath,
    ApiJson(req): ApiJson<StageEnvRequest>,
) -> ApiResult<Json<StageEnvResponse>> {
    let env: BTreeMap<String, String> = req
        .entries
        .into_iter()
        .map(|e| (e.env_name, e.value))
        .collect();
    super::sessions::check_env(&env)?;
    let row = vms::owned(&state, user.id, &vm_id).await?;
    let staged = env.keys().cloned().collect();
    vms::stage_env(&state, &row, env).await?;
    Ok(Json(StageEnvResponse {
        vm_id: row.record.vm_id,
        status: "ok".into(),
        staged,
    }))
}

async fn clone_vm(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(vm_id): ApiPath,
    ApiQuery(q): ApiQuery<WaitQuery>,
    ApiJson(req): ApiJson<CloneVmRequest>,
) -> ApiResult<Json<VmRecord>> {
    if let Some(name) = &req.snapshot_name {
        snapshots::check_name(name)?;
    }
    state.require_ready()?;
    let row = vms::owned(&state, user.id, &vm_id).await?;
    check_active_limit(&state, user.id).await?;
    Ok(answer(
        &state,
        vms::clone_vm(&state, row, req.snapshot_name, wait(&q)).await?,
    ))
}

async fn snapshot(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(vm_id): ApiPath,
    ApiQuery(q): ApiQuery<WaitQuery>,
    ApiJson(req): ApiJson<SnapshotVmRequest>,
) -> ApiResult<Json<SnapshotRecord>> {
    let row = vms::owned(&state, user.id, &vm_id).await?;
    let name = req.name.unwrap_or_else(|| {
        format!(
            "{}-{}",
            row.record.vm_id,
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        )
    });
    Ok(Json(
        snapshots::take_from_request(&state, &row, name, wait(&q)).await?,
    ))
}
