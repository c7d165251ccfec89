//! Shares (spec §9): create (idempotent per VM and port) and update. There is no list or
//! delete in the client; `revoke` ends a share.

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::shares;
use crate::state::AppState;
use axum::extract::State;
use axum::routing::{patch, post};
use axum::{Json, Router};
use instavm_api::{CreateShareRequest, ShareRecord, UpdateShareRequest};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/shares", post(create))
        .route("/v1/shares/{share_id}", patch(update).get(get_one))
}

async fn create(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiJson(req): ApiJson<CreateShareRequest>,
) -> ApiResult<Json<ShareRecord>> {
    Ok(Json(shares::create(&state, user.id, req).await?))
}

async fn update(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<UpdateShareRequest>,
) -> ApiResult<Json<ShareRecord>> {
    let row = shares::owned(&state, user.id, &id).await?;
    Ok(Json(shares::update(&state, row, req).await?))
}

/// Not in the official client; ours reads a share back with it.
async fn get_one(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<ShareRecord>> {
    let row = shares::owned(&state, user.id, &id).await?;
    Ok(Json(shares::get(&state, row).await?))
}
