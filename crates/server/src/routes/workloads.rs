//! Workloads (ours, docs/deploy.md): deployed cron and job manifests, their runs and logs, and
//! the webhook triggers of jobs (`/v1/hooks/...`, authenticated per trigger, not by a key).

use crate::auth::{self, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiPath2};
use crate::state::AppState;
use crate::workloads;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use instavm_api::*;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/workloads", get(list).post(deploy))
        .route("/v1/workloads/{slug}", get(get_one).delete(delete))
        .route("/v1/workloads/{slug}/pause", post(pause))
        .route("/v1/workloads/{slug}/resume", post(resume))
        .route("/v1/workloads/{slug}/runs", get(history).post(run_now))
        .route("/v1/runs/{run_id}", get(run))
        .route("/v1/runs/{run_id}/logs", get(logs))
        .route(
            "/v1/hooks/{workload_id}/{*path}",
            post(hook).layer(axum::extract::DefaultBodyLimit::max(
                workloads::MAX_HOOK_BODY,
            )),
        )
}

/// Trigger URLs name the server as the caller reached it.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

async fn deploy(
    State(state): State<AppState>,
    Principal(user): Principal,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateWorkloadRequest>,
) -> ApiResult<(StatusCode, Json<WorkloadRecord>)> {
    let (record, created) = workloads::deploy(&state, user.id, req, &base_url(&headers)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record)))
}

async fn list(
    State(state): State<AppState>,
    Principal(user): Principal,
    headers: HeaderMap,
) -> ApiResult<Json<WorkloadList>> {
    Ok(Json(
        workloads::list(&state, user.id, &base_url(&headers)).await?,
    ))
}

async fn get_one(
    State(state): State<AppState>,
    Principal(user): Principal,
    headers: HeaderMap,
    ApiPath(slug): ApiPath,
) -> ApiResult<Json<WorkloadRecord>> {
    Ok(Json(
        workloads::get(&state, user.id, &slug, &base_url(&headers)).await?,
    ))
}

async fn delete(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(slug): ApiPath,
) -> ApiResult<Json<serde_json::Value>> {
    workloads::delete(&state, user.id, &slug).await?;
    Ok(Json(serde_json::json!({ "slug": slug, "deleted": true })))
}

async fn pause(
    State(state): State<AppState>,
    Principal(user): Principal,
    headers: HeaderMap,
    ApiPath(slug): ApiPath,
) -> ApiResult<Json<WorkloadRecord>> {
    Ok(Json(
        workloads::set_paused(&state, user.id, &slug, true, &base_url(&headers)).await?,
    ))
}

async fn resume(
    State(state): State<AppState>,
    Principal(user): Principal,
    headers: HeaderMap,
    ApiPath(slug): ApiPath,
) -> ApiResult<Json<WorkloadRecord>> {
    Ok(Json(
        workloads::set_paused(&state, user.id, &slug, false, &base_url(&headers)).await?,
    ))
}

async fn run_now(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(slug): ApiPath,
) -> ApiResult<(StatusCode, Json<RunRecord>)> {
    let w = workloads::owned(&state, user.id, &slug).await?;
    let run = workloads::start_run(&state, &w, "manual", None).await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    limit: Option<String>,
}

async fn history(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(slug): ApiPath,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<RunList>> {
    let limit = match q.limit.as_deref() {
        None => 50,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::Unprocessable(format!("limit {text:?} must be 1 to 500")))?,
    };
    let w = workloads::owned(&state, user.id, &slug).await?;
    Ok(Json(workloads::history(&state, &w, limit).await?))
}

async fn run(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(run_id): ApiPath,
) -> ApiResult<Json<RunRecord>> {
    let (run, w) = workloads::owned_run(&state, user.id, &run_id).await?;
    Ok(Json(workloads::run_record(&run, &w.row.slug)))
}

async fn logs(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(run_id): ApiPath,
) -> ApiResult<Json<RunLogs>> {
    let (run, _) = workloads::owned_run(&state, user.id, &run_id).await?;
    let id = run.id.clone();
    let (stdout, stderr) = state
        .db(move |s| s.run_logs(&id))
        .await?
        .unwrap_or_default();
    Ok(Json(RunLogs {
        run_id: run.id,
        stdout,
        stderr,
    }))
}

async fn hook(
    State(state): State<AppState>,
    ApiPath2(workload_id, path): ApiPath2,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<RunRecord>)> {
    // Only consulted by `auth: api_key` triggers; a wrong key there is a plain 401.
    let api_key_user = match auth::header_key(&headers)? {
        Some(key) => auth::authenticate(&state, &key).await.ok().map(|u| u.id),
        None => None,
    };
    let signature = headers
        .get("instavm-signature")
        .and_then(|v| v.to_str().ok());
    let run = workloads::hook(
        &state,
        &workload_id,
        &format!("/{path}"),
        signature,
        api_key_user,
        &body,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}
