//! `/v1/ssh-keys` (spec §3): the account's public keys for the SSH gateway.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_int_id, ApiJson, ApiPath};
use crate::sshkey;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::Utc;
use instavm_api::{AddSshKeyRequest, Deleted, SshKey, SshKeyList};
use instavm_store::{NewSshKey, SshKeyRecord};

fn record(k: &SshKeyRecord) -> SshKey {
    SshKey {
        id: k.id,
        fingerprint: k.fingerprint.clone(),
        key_type: k.key_type.clone(),
        comment: k.comment.clone(),
        public_key: k.public_key.clone(),
        created_at: k.created_at,
    }
}

pub async fn add(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiJson(req): ApiJson<AddSshKeyRequest>,
) -> ApiResult<Json<SshKey>> {
    let key = sshkey::parse(&req.public_key)
        .map_err(|e| ApiError::Unprocessable(format!("invalid public_key: {e}")))?;
    let limit = state.limits().max_ssh_keys_per_user;
    let user_id = user.id;
    if state.db(move |s| s.count_ssh_keys(user_id)).await? >= limit {
        return Err(ApiError::Forbidden(format!(
            "SSH key limit reached: at most {limit} keys per user"
        )));
    }
    let rec = state
        .db(move |s| {
            s.add_ssh_key(
                user_id,
                &NewSshKey {
                    key_type: &key.key_type,
                    public_key: &key.line,
                    fingerprint: &key.fingerprint,
                    comment: key.comment.as_deref(),
                },
                Utc::now(),
            )
        })
        .await?;
    Ok(Json(record(&rec)))
}

/// Always `{"keys": [...]}`: the official client breaks on a bare array here.
pub async fn list(
    State(state): State<AppState>,
    Principal(user): Principal,
) -> ApiResult<Json<SshKeyList>> {
    let user_id = user.id;
    let keys = state.db(move |s| s.list_ssh_keys(user_id)).await?;
    Ok(Json(SshKeyList {
        keys: keys.iter().map(record).collect(),
    }))
}

pub async fn delete(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<Deleted>> {
    let id = parse_int_id(&id, "SSH key")?;
    let user_id = user.id;
    if !state.db(move |s| s.delete_ssh_key(user_id, id)).await? {
        return Err(ApiError::NotFound("SSH key not found".into()));
    }
    Ok(Json(Deleted { id, deleted: true }))
}
