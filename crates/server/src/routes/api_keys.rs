//! `/v1/api-keys/` (spec §13). Served with and without the trailing slash.

use crate::auth::{display_prefix, generate_key, hash_key, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_int_id, ApiJson, ApiPath};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::Utc;
use instavm_api::{ApiKey, CreateApiKeyRequest, CreatedApiKey, Deleted, UpdateApiKeyRequest};
use instavm_store::{ApiKeyRecord, NewApiKey};

const MAX_DESCRIPTION: usize = 200;

fn record(k: &ApiKeyRecord) -> ApiKey {
    ApiKey {
        id: k.id,
        description: k.description.clone(),
        prefix: k.prefix.clone(),
        is_active: k.is_active,
        created_at: k.created_at,
    }
}

fn check_description(d: Option<&str>) -> ApiResult<()> {
    if d.is_some_and(|d| d.len() > MAX_DESCRIPTION) {
        return Err(ApiError::Unprocessable(format!(
            "description is longer than {MAX_DESCRIPTION} bytes"
        )));
    }
    Ok(())
}

fn not_found() -> ApiError {
    ApiError::NotFound("API key not found".into())
}

/// Create a key; the plaintext is in this answer only.
pub async fn create(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiJson(req): ApiJson<CreateApiKeyRequest>,
) -> ApiResult<Json<CreatedApiKey>> {
    check_description(req.description.as_deref())?;
    let limit = state.limits().max_api_keys_per_user;
    let user_id = user.id;
    if state.db(move |s| s.count_api_keys(user_id)).await? >= limit {
        return Err(ApiError::Forbidden(format!(
            "API key limit reached: at most {limit} keys per user"
        )));
    }
    let key = generate_key();
    let (hash, prefix) = (hash_key(&key), display_prefix(&key));
    let rec = state
        .db(move |s| {
            s.create_api_key(
                user_id,
                &NewApiKey {
                    hash: &hash,
                    prefix: &prefix,
                    description: req.description.as_deref(),
                },
                Utc::now(),
            )
        })
        .await?;
    Ok(Json(CreatedApiKey {
        record: record(&rec),
        api_key: key.clone(),
        key,
    }))
}

/// The caller's keys, as a bare array.
pub async fn list(
    State(state): State<AppState>,
    Principal(user): Principal,
) -> ApiResult<Json<Vec<ApiKey>>> {
    let user_id = user.id;
    let keys = state.db(move |s| s.list_api_keys(user_id)).await?;
    Ok(Json(keys.iter().map(record).collect()))
}

pub async fn get(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<ApiKey>> {
    let id = parse_int_id(&id, "API key")?;
    let user_id = user.id;
    let key = state
        .db(move |s| s.get_api_key(user_id, id))
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(record(&key)))
}

/// Change `description`, or revoke with `is_active: false`.
pub async fn update(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<UpdateApiKeyRequest>,
) -> ApiResult<Json<ApiKey>> {
    let id = parse_int_id(&id, "API key")?;
    check_description(req.description.as_deref())?;
    let user_id = user.id;
    let key = state
        .db(move |s| s.update_api_key(user_id, id, req.description.as_deref(), req.is_active))
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(record(&key)))
}

pub async fn delete(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<Deleted>> {
    let id = parse_int_id(&id, "API key")?;
    let user_id = user.id;
    if !state.db(move |s| s.delete_api_key(user_id, id)).await? {
        return Err(not_found());
    }
    Ok(Json(Deleted { id, deleted: true }))
}
