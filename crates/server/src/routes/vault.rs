//! Secrets vaults (spec §4): the 16 routes. `catalog` is a fixed segment, matched before
//! `{vault_id}`; `services:from_template` is a literal segment with its colon.

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiPath2, ApiQuery};
use crate::state::AppState;
use crate::vault;
use axum::extract::State;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use instavm_api::*;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/vaults", get(list).post(create))
        .route("/v1/vaults/catalog", get(catalog))
        .route(
            "/v1/vaults/{vault_id}",
            get(get_one).patch(update).delete(remove),
        )
        .route("/v1/vaults/{vault_id}/discover", get(discover))
        .route(
            "/v1/vaults/{vault_id}/credentials",
            get(list_credentials).post(add_credential),
        )
        .route(
            "/v1/vaults/{vault_id}/credentials/{credential_id}",
            delete(delete_credential),
        )
        .route(
            "/v1/vaults/{vault_id}/credentials/{credential_id}/rotate",
            post(rotate_credential),
        )
        .route(
            "/v1/vaults/{vault_id}/services",
            get(list_services).post(add_service),
        )
        .route(
            "/v1/vaults/{vault_id}/services/{service_id}",
            delete(delete_service),
        )
        .route(
            "/v1/vaults/{vault_id}/services:from_template",
            post(from_template),
        )
        .route("/v1/vaults/{vault_id}/request-logs", get(request_logs))
}

async fn list(
    State(state): State<AppState>,
    Principal(user): Principal,
) -> ApiResult<Json<VaultList>> {
    Ok(Json(vault::list(&state, user.id).await?))
}

async fn create(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiJson(req): ApiJson<CreateVaultRequest>,
) -> ApiResult<Json<VaultRecord>> {
    Ok(Json(vault::create(&state, user.id, req).await?))
}

async fn catalog(Principal(_user): Principal) -> Json<CatalogList> {
    Json(vault::catalog_list())
}

async fn get_one(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<VaultRecord>> {
    Ok(Json(vault::vault_record(
        vault::owned(&state, user.id, &id).await?,
    )))
}

async fn update(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<UpdateVaultRequest>,
) -> ApiResult<Json<VaultRecord>> {
    let row = vault::owned(&state, user.id, &id).await?;
    Ok(Json(vault::update(&state, row, req).await?))
}

async fn remove(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<DeletedResponse>> {
    let row = vault::owned(&state, user.id, &id).await?;
    Ok(Json(vault::delete(&state, row).await?))
}

async fn discover(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<VaultDiscovery>> {
    let row = vault::owned(&state, user.id, &id).await?;
    Ok(Json(vault::discover(&state, row).await?))
}

async fn list_credentials(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<CredentialList>> {
    let row = vault::owned(&state, user.id, &id).await?;
    Ok(Json(vault::list_credentials(&state, row).await?))
}

async fn add_credential(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<CreateCredentialRequest>,
) -> ApiResult<Json<CredentialRecord>> {
    let row = vault::owned(&state, user.id, &id).await?;
    Ok(Json(vault::add_credential(&state, row, req).await?))
}

async fn rotate_credential(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath2(id, cred): ApiPath2,
    ApiJson(req): ApiJson<RotateCredentialRequest>,
) -> ApiResult<Json<CredentialRecord>> {
    let row = vault::owned(&state, user.id, &id).await?;
    Ok(Json(
        vault::rotate_credential(&state, row, &cred, req).await?,
    ))
}

async fn delete_credential(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath2(id, cred): ApiPath2,
) -> ApiResult<Json<DeletedResponse>> {
    let row = vault::owned(&state, user.id, &id).await?;
    Ok(Json(vault::delete_credential(&state, row, &cred).await?))
}

async fn list_services(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<ServiceList>> {
    let row = vault::owned(&state, user.id, &id).await?;
    Ok(Json(vault::list_services(&state, row).await?))
}

async fn add_service(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<CreateServiceRequest>,
) -> ApiResult<Json<ServiceRecord>> {
    let row = vault::owned(&state, user.id, &id).await?;
    Ok(Json(vault::add_service(&state, row, req).await?))
}

async fn delete_service(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath2(id, svc): ApiPath2,
) -> ApiResult<Json<DeletedResponse>> {
    let row = vault::owned(&state, user.id, &id).await?;
    Ok(Json(vault::delete_service(&state, row, &svc).await?))
}

async fn from_template(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<FromTemplateRequest>,
) -> ApiResult<Json<FromTemplateResponse>> {
    let row = vault::owned(&state, user.id, &id).await?;
    Ok(Json(vault::from_template(&state, row, req).await?))
}

async fn request_logs(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiQuery(q): ApiQuery<RequestLogQuery>,
) -> ApiResult<Json<RequestLogList>> {
    let row = vault::owned(&state, user.id, &id).await?;
    Ok(Json(vault::request_logs(&state, row, q.limit).await?))
}
