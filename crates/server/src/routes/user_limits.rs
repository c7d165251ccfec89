//! Per-user quota overrides (admin key only): `GET`, `PUT` and `DELETE
//! /v1/admin/users/{user_id}/limits` (docs/quotas.md). `PUT` replaces the user's overrides with
//! the body; fields left out take the server's limits, and `{}` (or `DELETE`) clears them all.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_int_id, ApiJson, ApiPath};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use instavm_api::{UserLimits, UserLimitsResponse};
use instavm_store::UserRecord;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/v1/admin/users/{user_id}/limits",
        get(show).put(set).delete(clear),
    )
}

async fn show(
    State(state): State<AppState>,
    Principal(caller): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<UserLimitsResponse>> {
    let user_id = target(&state, &caller, &id).await?;
    answer(&state, user_id).await
}

async fn set(
    State(state): State<AppState>,
    Principal(caller): Principal,
    ApiPath(id): ApiPath,
    ApiJson(overrides): ApiJson<UserLimits>,
) -> ApiResult<Json<UserLimitsResponse>> {
    let user_id = target(&state, &caller, &id).await?;
    state
        .limits()
        .check_overrides(&overrides)
        .map_err(ApiError::Unprocessable)?;
    let now = chrono::Utc::now();
    state
        .db(move |s| s.set_user_limits(user_id, &overrides, now))
        .await?;
    tracing::info!(user = user_id, "user limits set");
    answer(&state, user_id).await
}

async fn clear(
    State(state): State<AppState>,
    Principal(caller): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<UserLimitsResponse>> {
    let user_id = target(&state, &caller, &id).await?;
    let now = chrono::Utc::now();
    state
        .db(move |s| s.set_user_limits(user_id, &UserLimits::default(), now))
        .await?;
    answer(&state, user_id).await
}

/// The user the path names, once the caller is known to be the admin and the user to exist.
async fn target(state: &AppState, caller: &UserRecord, id: &str) -> ApiResult<i64> {
    if !caller.is_admin {
        return Err(ApiError::Forbidden("this needs the admin API key".into()));
    }
    let user_id = parse_int_id(id, "user id")?;
    match state.db(move |s| s.get_user(user_id)).await? {
        Some(_) => Ok(user_id),
        None => Err(ApiError::NotFound(format!("user {user_id} not found"))),
    }
}

async fn answer(state: &AppState, user_id: i64) -> ApiResult<Json<UserLimitsResponse>> {
    let stored = state.db(move |s| s.user_limits(user_id)).await?;
    let (overrides, updated_at) = match stored {
        Some((o, at)) => (o, Some(at)),
        None => (UserLimits::default(), None),
    };
    Ok(Json(UserLimitsResponse {
        user_id,
        effective: state.limits().for_user(&overrides).effective(),
        overrides,
        updated_at,
    }))
}
