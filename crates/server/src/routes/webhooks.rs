//! Webhooks (spec §15): endpoints, their secrets, test and verify, deliveries and replay.

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use crate::webhooks;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use instavm_api::{
    CreateWebhookRequest, DeliveryQuery, UpdateWebhookRequest, WebhookDelivery,
    WebhookDeliveryPage, WebhookEndpoint, WebhookVerifyResult,
};
use serde_json::Value;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks/endpoints", get(list).post(create))
        .route(
            "/v1/webhooks/endpoints/{endpoint_id}",
            get(get_one).patch(update).delete(disable),
        )
        .route(
            "/v1/webhooks/endpoints/{endpoint_id}/rotate-secret",
            post(rotate),
        )
        .route("/v1/webhooks/endpoints/{endpoint_id}/test", post(test))
        .route("/v1/webhooks/endpoints/{endpoint_id}/verify", post(verify))
        .route("/v1/webhooks/deliveries", get(deliveries))
        .route("/v1/webhooks/deliveries/{delivery_id}", get(delivery))
        .route("/v1/webhooks/deliveries/{delivery_id}/replay", post(replay))
}

async fn create(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiJson(req): ApiJson<CreateWebhookRequest>,
) -> ApiResult<Json<WebhookEndpoint>> {
    Ok(Json(webhooks::create(&state, user.id, req).await?))
}

/// A bare array (spec §23).
async fn list(
    State(state): State<AppState>,
    Principal(user): Principal,
) -> ApiResult<Json<Vec<WebhookEndpoint>>> {
    Ok(Json(webhooks::list(&state, user.id).await?))
}

async fn get_one(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<WebhookEndpoint>> {
    let row = webhooks::owned(&state, user.id, &id).await?;
    Ok(Json(webhooks::wire_endpoint(&row, false)))
}

async fn update(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<UpdateWebhookRequest>,
) -> ApiResult<Json<WebhookEndpoint>> {
    let row = webhooks::owned(&state, user.id, &id).await?;
    Ok(Json(webhooks::update(&state, row, req).await?))
}

async fn disable(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<Value>> {
    let row = webhooks::owned(&state, user.id, &id).await?;
    Ok(Json(webhooks::disable(&state, row).await?))
}

async fn rotate(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<WebhookEndpoint>> {
    let row = webhooks::owned(&state, user.id, &id).await?;
    Ok(Json(webhooks::rotate(&state, row).await?))
}

async fn test(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<Value>> {
    let row = webhooks::owned(&state, user.id, &id).await?;
    Ok(Json(webhooks::test(&state, row).await?))
}

async fn verify(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<WebhookVerifyResult>> {
    let row = webhooks::owned(&state, user.id, &id).await?;
    Ok(Json(webhooks::verify(&state, row).await?))
}

async fn deliveries(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<WebhookDeliveryPage>> {
    Ok(Json(webhooks::deliveries(&state, user.id, q).await?))
}

async fn delivery(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<WebhookDelivery>> {
    Ok(Json(webhooks::get_delivery(&state, user.id, &id).await?))
}

async fn replay(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<Value>> {
    Ok(Json(webhooks::replay(&state, user.id, &id).await?))
}
