//! Egress policy (spec §2.1 to §2.4): handlers parse, call `crate::egress`, answer.

use crate::auth::Principal;
use crate::egress;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use instavm_api::{EgressPolicyRequest, EgressPolicyResponse};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/egress/session/{session_id}",
            get(get_session).post(set_session),
        )
        .route("/v1/egress/vm/{vm_id}", get(get_vm).post(set_vm))
}

async fn get_session(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(session_id): ApiPath,
) -> ApiResult<Json<EgressPolicyResponse>> {
    Ok(Json(
        egress::get_session(&state, user.id, &session_id).await?,
    ))
}

async fn set_session(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(session_id): ApiPath,
    ApiJson(req): ApiJson<EgressPolicyRequest>,
) -> ApiResult<Json<EgressPolicyResponse>> {
    Ok(Json(
        egress::set_session(&state, user.id, &session_id, &req).await?,
    ))
}

async fn get_vm(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(vm_id): ApiPath,
) -> ApiResult<Json<EgressPolicyResponse>> {
    Ok(Json(egress::get_vm(&state, user.id, &vm_id).await?))
}

async fn set_vm(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(vm_id): ApiPath,
    ApiJson(req): ApiJson<EgressPolicyRequest>,
) -> ApiResult<Json<EgressPolicyResponse>> {
    Ok(Json(egress::set_vm(&state, user.id, &vm_id, &req).await?))
}
