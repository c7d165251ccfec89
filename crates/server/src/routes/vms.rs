//! `GET /v1/vms`, `GET /v1/vms/` and `GET /v1/vms/{vm_id}`: the VMs behind the caller's
//! sessions, read-only (the README quick start lists them).

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use instavm_api::{SessionState, VmRecord};
use instavm_store::SessionRecord;

/// Most records one listing returns (newest first).
const MAX_LISTED: usize = 1000;

fn record(s: &SessionRecord) -> VmRecord {
    VmRecord {
        vm_id: s.vm_id.clone(),
        id: s.vm_id.clone(),
        session_id: s.id.clone(),
        status: s.status,
        created_at: s.created_at,
        expires_at: s.expires_at,
        memory_mb: s.memory_mb,
        vcpu_count: s.vcpu_count,
        metadata: s.metadata.clone(),
    }
}

async fn list(state: &AppState, user_id: i64, running_only: bool) -> ApiResult<Vec<VmRecord>> {
    let sessions = state
        .db(move |s| {
            s.list_user_sessions(user_id, MAX_LISTED, |rec| {
                !running_only || rec.status == SessionState::Active
            })
        })
        .await?;
    Ok(sessions.iter().map(record).collect())
}

/// Running VMs, as a bare array.
pub async fn list_running(
    State(state): State<AppState>,
    Principal(user): Principal,
) -> ApiResult<Json<Vec<VmRecord>>> {
    Ok(Json(list(&state, user.id, true).await?))
}

/// Every VM record, ended ones included.
pub async fn list_all(
    State(state): State<AppState>,
    Principal(user): Principal,
) -> ApiResult<Json<Vec<VmRecord>>> {
    Ok(Json(list(&state, user.id, false).await?))
}

pub async fn get(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(vm_id): ApiPath,
) -> ApiResult<Json<VmRecord>> {
    let user_id = user.id;
    let rec = state
        .db(move |s| s.get_user_session_by_vm(user_id, &vm_id))
        .await?
        .ok_or_else(|| ApiError::NotFound("VM not found".into()))?;
    Ok(Json(record(&rec)))
}
