//! Snapshots (spec §7.2 to §7.4): list, get, delete. They are taken with
//! `POST /v1/vms/{id}/snapshot` (routes/vms.rs); building one from an OCI image (§7.1) comes
//! with the OCI issue.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::snapshots;
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use instavm_api::{DeleteSnapshotResponse, SnapshotListQuery, SnapshotRecord};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/snapshots", get(list).post(build))
        .route("/v1/snapshots/{snapshot_id}", get(get_one).delete(delete))
}

/// Every snapshot here is taken from a VM, so `type=system` lists none.
async fn list(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiQuery(q): ApiQuery<SnapshotListQuery>,
) -> ApiResult<Json<Vec<SnapshotRecord>>> {
    let all = snapshots::list(&state, user.id).await?;
    Ok(Json(match q.snapshot_type.as_deref() {
        None | Some("") => all,
        Some(t) => all.into_iter().filter(|s| s.snapshot_type == t).collect(),
    }))
}

async fn build(Principal(_user): Principal) -> ApiError {
    ApiError::Unprocessable(
        "building snapshots from OCI images is not supported by this server yet; snapshot a VM with POST /v1/vms/{vm_id}/snapshot".into(),
    )
}

async fn get_one(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<SnapshotRecord>> {
    Ok(Json(snapshots::owned(&state, user.id, &id).await?.record))
}

async fn delete(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<DeleteSnapshotResponse>> {
    let row = snapshots::owned(&state, user.id, &id).await?;
    snapshots::delete(&state, row).await?;
    Ok(Json(DeleteSnapshotResponse {
        success: true,
        snapshot_id: id,
        status: "deleted".into(),
    }))
}
