//! Volumes (spec §16) and VM mounts (§6.12 to §6.14): handlers parse, call `crate::volumes`,
//! answer.

use super::files::{
    base64_json_body, drain_rest, multipart_error, text_field, transfer_pass, with_field_reader,
    DRAIN_AFTER_ERROR,
};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiMultipart, ApiPath, ApiPath2, ApiQuery};
use crate::state::AppState;
use crate::{vms, volumes};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures::TryStreamExt;
use instavm_api::{
    volume_upload_fields as fields, CheckpointRecord, CreateCheckpointRequest, CreateVolumeRequest,
    DeleteCheckpointResponse, DeleteFileResponse, DeleteVolumeResponse, ListFilesQuery,
    MountRecord, MountVolumeRequest, PathQuery, RefreshQuery, UnmountQuery, UnmountResponse,
    UpdateVolumeRequest, VolumeDownloadRequest, VolumeFile, VolumeMountSpec, VolumeRecord,
    VolumeUploadResponse, WaitQuery,
};
use instavm_runtime::VolumeId;
use instavm_store::VolumeRow;

/// Default and largest `limit` of a file listing.
const DEFAULT_LIST_LIMIT: usize = 1000;
const MAX_LIST_LIMIT: usize = 10_000;

pub fn router(max_upload_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/v1/volumes", get(list).post(create))
        .route(
            "/v1/volumes/{volume_id}",
            get(get_one).patch(update).delete(remove),
        )
        .route(
            "/v1/volumes/{volume_id}/checkpoints",
            get(list_checkpoints).post(create_checkpoint),
        )
        .route(
            "/v1/volumes/{volume_id}/checkpoints/{checkpoint_id}",
            delete(delete_checkpoint),
        )
        .route(
            "/v1/volumes/{volume_id}/files",
            get(list_files).delete(delete_file),
        )
        .route(
            "/v1/volumes/{volume_id}/files/upload",
            post(upload).layer(DefaultBodyLimit::max(max_upload_bytes)),
        )
        .route("/v1/volumes/{volume_id}/files/download", post(download))
        .route("/v1/vms/{vm_id}/volumes", get(vm_mounts).post(mount))
        .route("/v1/vms/{vm_id}/volumes/{volume_id}", delete(unmount))
}

fn runtime_id(v: &VolumeRow) -> ApiResult<VolumeId> {
    VolumeId::parse(&v.id).ok_or_else(|| ApiError::Internal(format!("bad volume id {}", v.id)))
}

async fn list(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiQuery(q): ApiQuery<RefreshQuery>,
) -> ApiResult<Json<Vec<VolumeRecord>>> {
    let rows = volumes::list(&state, user.id, q.refresh_usage.unwrap_or(false)).await?;
    Ok(Json(rows.iter().map(volumes::record).collect()))
}

async fn create(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiJson(req): ApiJson<CreateVolumeRequest>,
) -> ApiResult<Json<VolumeRecord>> {
    let name = req
        .name
        .ok_or_else(|| ApiError::Unprocessable("missing field `name`".into()))?;
    let quota = req
        .quota_bytes
        .ok_or_else(|| ApiError::Unprocessable("missing field `quota_bytes`".into()))?;
    let row = volumes::create(&state, user.id, name, quota).await?;
    Ok(Json(volumes::record(&row)))
}

async fn get_one(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiQuery(q): ApiQuery<RefreshQuery>,
) -> ApiResult<Json<VolumeRecord>> {
    let mut row = volumes::owned(&state, user.id, &id).await?;
    if q.refresh_usage.unwrap_or(false) {
        row = volumes::refresh(&state, row).await?;
    }
    Ok(Json(volumes::record(&row)))
}

async fn update(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<UpdateVolumeRequest>,
) -> ApiResult<Json<VolumeRecord>> {
    let row = volumes::owned(&state, user.id, &id).await?;
    let row = volumes::update(&state, row, req.name, req.quota_bytes).await?;
    Ok(Json(volumes::record(&row)))
}

async fn remove(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<DeleteVolumeResponse>> {
    let row = volumes::owned(&state, user.id, &id).await?;
    volumes::delete(&state, row).await?;
    Ok(Json(DeleteVolumeResponse {
        success: true,
        volume_id: id,
        status: "deleted".into(),
    }))
}

async fn list_checkpoints(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<Vec<CheckpointRecord>>> {
    let vol = volumes::owned(&state, user.id, &id).await?;
    let rows = volumes::checkpoints(&state, &vol).await?;
    Ok(Json(rows.iter().map(volumes::checkpoint_record).collect()))
}

/// The body may be `{}`, or missing entirely.
async fn create_checkpoint(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    body: axum::body::Bytes,
) -> ApiResult<Json<CheckpointRecord>> {
    let req: CreateCheckpointRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CreateCheckpointRequest::default()
    } else {
        crate::extract::parse_json(&body)?
    };
    let vol = volumes::owned(&state, user.id, &id).await?;
    let row = volumes::checkpoint(&state, &vol, req.name).await?;
    Ok(Json(volumes::checkpoint_record(&row)))
}

async fn delete_checkpoint(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath2(id, ckpt): ApiPath2,
) -> ApiResult<Json<DeleteCheckpointResponse>> {
    let vol = volumes::owned(&state, user.id, &id).await?;
    let deleted = volumes::delete_checkpoint(&state, &vol, &ckpt).await?;
    Ok(Json(DeleteCheckpointResponse {
        success: true,
        volume_id: id,
        checkpoint_id: deleted,
        status: "deleted".into(),
    }))
}

/// A listing prefix: relative, no `..`; it may end in `/` or in part of a name.
fn check_prefix(raw: &str) -> ApiResult<String> {
    if raw.is_empty() {
        return Ok(String::new());
    }
    if raw.starts_with('/') || raw.contains('\0') || raw.split('/').any(|s| s == "..") {
        return Err(ApiError::BadRequest(format!(
            "invalid prefix {raw:?}: it must be relative to the volume root, without '..'"
        )));
    }
    let trailing = raw.ends_with('/');
    let mut p: Vec<&str> = raw
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if trailing && !p.is_empty() {
        p.push("");
    }
    Ok(p.join("/"))
}

async fn list_files(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiQuery(q): ApiQuery<ListFilesQuery>,
) -> ApiResult<Json<Vec<VolumeFile>>> {
    let vol = volumes::owned(&state, user.id, &id).await?;
    let prefix = check_prefix(q.prefix.as_deref().unwrap_or(""))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(ApiError::Unprocessable(format!(
            "limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}"
        )));
    }
    let files = state
        .runtime()
        .volume_files(
            &runtime_id(&vol)?,
            &prefix,
            q.recursive.unwrap_or(true),
            limit,
        )
        .await
        .map_err(volumes::runtime_error)?;
    Ok(Json(
        files
            .into_iter()
            .map(|f| VolumeFile {
                path: f.path,
                size: f.size,
                modified_at: chrono::DateTime::from_timestamp(f.modified, 0).unwrap_or_default(),
            })
            .collect(),
    ))
}

async fn delete_file(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiQuery(q): ApiQuery<PathQuery>,
) -> ApiResult<Json<DeleteFileResponse>> {
    let vol = volumes::owned(&state, user.id, &id).await?;
    let raw = q
        .path
        .ok_or_else(|| ApiError::Unprocessable("missing query parameter `path`".into()))?;
    let path = volumes::file_path(&raw)?;
    state
        .runtime()
        .volume_remove(&runtime_id(&vol)?, &path)
        .await
        .map_err(volumes::runtime_error)?;
    Ok(Json(DeleteFileResponse {
        success: true,
        volume_id: id,
        path,
    }))
}

/// Multipart `path`, `overwrite`, then `file` (the order the official SDK sends): the
/// destination is checked before a file byte is accepted, and the file streams into the volume.
async fn upload(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiMultipart(mut form): ApiMultipart,
) -> ApiResult<Json<VolumeUploadResponse>> {
    let answer = receive(&state, user.id, &id, &mut form).await;
    if answer.is_err() {
        drain_rest(&mut form, DRAIN_AFTER_ERROR).await;
    }
    answer.map(Json)
}

async fn receive(
    state: &AppState,
    user_id: i64,
    id: &str,
    form: &mut axum::extract::Multipart,
) -> ApiResult<VolumeUploadResponse> {
    let vol = volumes::owned(state, user_id, id).await?;
    let _pass = transfer_pass(state, user_id)?;
    let mut path: Option<String> = None;
    let mut overwrite = false;
    let mut done: Option<VolumeUploadResponse> = None;
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            fields::FILE => {
                if done.is_some() {
                    return Err(ApiError::BadRequest("more than one `file` part".into()));
                }
                let Some(dest) = path.clone() else {
                    return Err(ApiError::Unprocessable(
                        "form field `path` must come before `file`: the destination is checked before any file data is accepted".into(),
                    ));
                };
                let rid = runtime_id(&vol)?;
                let info = with_field_reader(field, |reader| async {
                    state
                        .runtime()
                        .volume_write(&rid, &dest, reader, overwrite)
                        .await
                        .map_err(volumes::runtime_error)
                })
                .await?;
                done = Some(VolumeUploadResponse {
                    success: true,
                    volume_id: vol.id.clone(),
                    path: info.path,
                    size: info.size,
                });
            }
            fields::PATH => path = Some(volumes::file_path(&text_field(field).await?)?),
            fields::OVERWRITE => {
                overwrite = match text_field(field).await?.as_str() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(ApiError::Unprocessable(format!(
                            "overwrite must be \"true\" or \"false\", got {other:?}"
                        )))
                    }
                }
            }
            // Unknown parts are drained and ignored, like unknown JSON fields.
            _ => drain_field(field).await?,
        }
    }
    let done = done.ok_or_else(|| ApiError::Unprocessable("missing form field `file`".into()))?;
    // Uploads change the usage the records show.
    let _ = volumes::refresh(state, vol).await;
    Ok(done)
}

async fn drain_field(mut field: axum::extract::multipart::Field<'_>) -> ApiResult<()> {
    while field.chunk().await.map_err(multipart_error)?.is_some() {}
    Ok(())
}

/// `{"path", "filename", "content" (base64), "size"}`, encoded while the file streams.
async fn download(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<VolumeDownloadRequest>,
) -> ApiResult<Response> {
    let vol = volumes::owned(&state, user.id, &id).await?;
    let raw = req
        .path
        .ok_or_else(|| ApiError::Unprocessable("missing field `path`".into()))?;
    let path = volumes::file_path(&raw)?;
    let pass = transfer_pass(&state, user.id)?;
    let max = state.limits().max_download_bytes;
    let (info, reader) = state
        .runtime()
        .volume_read(&runtime_id(&vol)?, &path)
        .await
        .map_err(volumes::runtime_error)?;
    if info.size > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "{path} is {} bytes; downloads are limited to {max} bytes",
            info.size
        )));
    }
    let filename = path.rsplit('/').next().unwrap_or(&path).to_owned();
    let head = format!(
        "{{\"path\":{},\"filename\":{},\"content\":\"",
        serde_json::to_string(&path).map_err(ApiError::internal)?,
        serde_json::to_string(&filename).map_err(ApiError::internal)?
    );
    let vol_id = vol.id.clone();
    let body = base64_json_body(head, reader, max).inspect_err(move |err| {
        let _held = &pass;
        tracing::error!(volume = %vol_id, error = %err, "volume download broke off");
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

async fn vm_mounts(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(vm_id): ApiPath,
) -> ApiResult<Json<Vec<MountRecord>>> {
    let vm = vms::owned(&state, user.id, &vm_id).await?;
    Ok(Json(volumes::mounts(&state, &vm).await?))
}

/// Mounting is quick, so `wait` changes nothing: the answer comes once the mount is there.
async fn mount(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(vm_id): ApiPath,
    ApiQuery(_wait): ApiQuery<WaitQuery>,
    ApiJson(req): ApiJson<MountVolumeRequest>,
) -> ApiResult<Json<MountRecord>> {
    let vm = vms::owned(&state, user.id, &vm_id).await?;
    if req.volume_id.is_none() {
        return Err(ApiError::Unprocessable("missing field `volume_id`".into()));
    }
    let spec = VolumeMountSpec {
        volume_id: req.volume_id,
        mount_path: req.mount_path,
        mode: req.mode,
        checkpoint_id: req.checkpoint_id,
        ..VolumeMountSpec::default()
    };
    Ok(Json(volumes::mount(&state, &vm, &spec).await?))
}

async fn unmount(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath2(vm_id, volume_id): ApiPath2,
    ApiQuery(q): ApiQuery<UnmountQuery>,
) -> ApiResult<Json<UnmountResponse>> {
    let vm = vms::owned(&state, user.id, &vm_id).await?;
    let path = q
        .mount_path
        .ok_or_else(|| ApiError::Unprocessable("missing query parameter `mount_path`".into()))?;
    volumes::owned(&state, user.id, &volume_id).await?;
    let row = volumes::unmount(&state, &vm, &volume_id, &path).await?;
    Ok(Json(UnmountResponse {
        success: true,
        vm_id,
        volume_id,
        mount_path: row.mount_path,
        status: "unmounted".into(),
    }))
}
