//! Tapes (spec §17): start on a session, stop, list, get, events (read and append), diff,
//! branch, delete, lanes, export. A tape that is not the caller's is 404, like an unknown one.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use crate::{sessions, tapes};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use instavm_api::{
    AppendTapeEventRequest, BranchTapeRequest, BranchTapeResponse, DeleteTapeResponse,
    StartTapeRequest, TapeDiff, TapeDiffQuery, TapeEvent, TapeEventsQuery, TapeExport, TapeLanes,
    TapeListQuery, TapeRecord, TapeStatus,
};
use instavm_store::{AppendError, TapeFilter, TapeRow};
use serde_json::{json, Value};

/// Largest payload of a client event.
const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions/{session_id}/tape/start", post(start))
        .route("/v1/tapes", get(list))
        .route("/v1/tapes/{tape_id}", get(show).delete(remove))
        .route("/v1/tapes/{tape_id}/stop", post(stop))
        .route("/v1/tapes/{tape_id}/events", get(events).post(append))
        .route("/v1/tapes/{tape_id}/diff", get(diff))
        .route("/v1/tapes/{tape_id}/branch", post(branch))
        .route("/v1/tapes/{tape_id}/lanes", get(lanes))
        .route("/v1/tapes/{tape_id}/export", get(export))
}

async fn start(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(session_id): ApiPath,
    ApiJson(req): ApiJson<StartTapeRequest>,
) -> ApiResult<Json<TapeRecord>> {
    let session = sessions::active(&state, user.id, &session_id).await?;
    let tape = tapes::start(
        &state,
        user.id,
        &session,
        req.record_fs.unwrap_or(true),
        req.record_egress_content.unwrap_or(false),
        req.retention_days.unwrap_or(7),
        None,
    )
    .await?;
    Ok(Json(tape))
}

/// The caller's tape.
async fn owned(state: &AppState, user_id: i64, tape_id: &str) -> ApiResult<TapeRow> {
    let id = tape_id.to_owned();
    match state.db(move |s| s.get_tape(&id)).await? {
        Some(t) if t.user_id == user_id => Ok(t),
        _ => Err(ApiError::NotFound(format!("tape {tape_id} not found"))),
    }
}

async fn stop(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(tape_id): ApiPath,
) -> ApiResult<Json<TapeRecord>> {
    owned(&state, user.id, &tape_id).await?;
    tapes::stop(&state, &tape_id).await?;
    Ok(Json(owned(&state, user.id, &tape_id).await?.record))
}

async fn list(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiQuery(q): ApiQuery<TapeListQuery>,
) -> ApiResult<Json<Vec<TapeRecord>>> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(TapeStatus::parse(s).ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "status must be recording, stopped, failed or expired, got {s:?}"
            ))
        })?),
    };
    let filter = TapeFilter {
        session_id: q.session_id,
        vm_id: q.vm_id,
        status,
        limit: bounded(q.limit, 50, 500, "limit")?,
        offset: q.offset.unwrap_or(0),
    };
    let rows = state.db(move |s| s.list_tapes(user.id, &filter)).await?;
    Ok(Json(rows.into_iter().map(|t| t.record).collect()))
}

fn bounded(value: Option<u32>, default: u32, max: u32, name: &str) -> ApiResult<u32> {
    match value.unwrap_or(default) {
        v @ 1.. if v <= max => Ok(v),
        v => Err(ApiError::Unprocessable(format!(
            "{name} must be between 1 and {max}, got {v}"
        ))),
    }
}

async fn show(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(tape_id): ApiPath,
) -> ApiResult<Json<TapeRecord>> {
    Ok(Json(owned(&state, user.id, &tape_id).await?.record))
}

async fn events(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(tape_id): ApiPath,
    ApiQuery(q): ApiQuery<TapeEventsQuery>,
) -> ApiResult<Json<Vec<TapeEvent>>> {
    owned(&state, user.id, &tape_id).await?;
    let limit = bounded(q.limit, 200, 1000, "limit")?;
    let (after, kind) = (q.after_step.unwrap_or(0), q.kind.filter(|k| !k.is_empty()));
    let events = state
        .db(move |s| s.tape_events(&tape_id, after, kind.as_deref(), limit))
        .await?;
    Ok(Json(events))
}

async fn append(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(tape_id): ApiPath,
    ApiJson(req): ApiJson<AppendTapeEventRequest>,
) -> ApiResult<Json<Value>> {
    let tape = owned(&state, user.id, &tape_id).await?;
    check_kind(&req.kind)?;
    let payload = match req.payload {
        None | Some(Value::Null) => json!({}),
        Some(p @ Value::Object(_)) => p,
        Some(_) => {
            return Err(ApiError::Unprocessable(
                "payload must be a JSON object".into(),
            ))
        }
    };
    if payload.to_string().len() > MAX_PAYLOAD_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "payload is over {MAX_PAYLOAD_BYTES} bytes"
        )));
    }
    // The step a client names (the SDK's tool-call end names its start) is the parent.
    let parent = req.parent_step_id.or(req.step_id);
    if let (Some(step), Some(_)) = (req.step_id, req.parent_step_id) {
        if step == 0 || step > tape.record.total_steps {
            return Err(ApiError::Unprocessable(format!(
                "step_id {step} names no step of tape {tape_id} (it has {})",
                tape.record.total_steps
            )));
        }
    }
    if let Some(c) = &req.checkpoint_id {
        if c.len() > 128 {
            return Err(ApiError::Unprocessable(
                "checkpoint_id is longer than 128 bytes".into(),
            ));
        }
    }
    let step = tapes::append(
        &state,
        &tape_id,
        &req.kind,
        payload.clone(),
        parent,
        req.checkpoint_id.clone(),
        false,
    )
    .await
    .map_err(|e| match e {
        AppendError::NoTape => ApiError::NotFound(format!("tape {tape_id} not found")),
        AppendError::NotRecording(status) => ApiError::Conflict(format!(
            "tape {tape_id} is {status}: events can only be added while it records"
        )),
        e @ AppendError::NoSuchParent { .. } => ApiError::Unprocessable(e.to_string()),
        AppendError::Store(e) => e.into(),
    })?;
    tapes::after_client_event(&state, &tape_id, step, &req.kind, &payload);
    Ok(Json(json!({
        "step_id": step,
        "tape_id": tape_id,
        "kind": req.kind,
        "parent_step_id": parent,
    })))
}

/// Event kinds are short names: letters, digits, `_`, `.`, `-`.
fn check_kind(kind: &str) -> ApiResult<()> {
    let ok = !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "kind {kind:?} is not valid: 1 to 64 letters, digits, '_', '.' or '-'"
        )))
    }
}

async fn diff(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(tape_id): ApiPath,
    ApiQuery(q): ApiQuery<TapeDiffQuery>,
) -> ApiResult<Json<TapeDiff>> {
    let tape = owned(&state, user.id, &tape_id).await?;
    let (Some(from), Some(to)) = (q.from, q.to) else {
        return Err(ApiError::Unprocessable(
            "diff needs both `from` and `to` (step numbers)".into(),
        ));
    };
    let content = match q.mode.as_deref() {
        None | Some("metadata") => false,
        Some("content") => true,
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "mode must be metadata or content, got {other:?}"
            )))
        }
    };
    Ok(Json(tapes::diff(&state, &tape, from, to, content).await?))
}

async fn branch(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(tape_id): ApiPath,
    ApiJson(req): ApiJson<BranchTapeRequest>,
) -> ApiResult<Json<BranchTapeResponse>> {
    let tape = owned(&state, user.id, &tape_id).await?;
    let at_step = req
        .at_step
        .ok_or_else(|| ApiError::Unprocessable("at_step is required".into()))?;
    let replay = match req.mode.as_deref() {
        None | Some("live") => false,
        Some("replay") => true,
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "mode must be live or replay, got {other:?}"
            )))
        }
    };
    Ok(Json(tapes::branch(&state, &tape, at_step, replay).await?))
}

async fn remove(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(tape_id): ApiPath,
) -> ApiResult<Json<DeleteTapeResponse>> {
    let tape = owned(&state, user.id, &tape_id).await?;
    let checkpoints_deleted = tapes::delete(&state, &tape).await?;
    Ok(Json(DeleteTapeResponse {
        success: true,
        tape_id,
        checkpoints_deleted,
    }))
}

async fn lanes(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(tape_id): ApiPath,
) -> ApiResult<Json<TapeLanes>> {
    owned(&state, user.id, &tape_id).await?;
    let id = tape_id.clone();
    let lanes = state.db(move |s| s.tape_lanes(&id)).await?;
    Ok(Json(TapeLanes { tape_id, lanes }))
}

async fn export(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(tape_id): ApiPath,
) -> ApiResult<Json<TapeExport>> {
    let tape = owned(&state, user.id, &tape_id).await?;
    let id = tape_id.clone();
    let (events, checkpoints) = state
        .db(move |s| {
            let events = s.tape_events(&id, 0, None, u32::MAX)?;
            Ok((events, s.tape_checkpoints(&id)?))
        })
        .await?;
    Ok(Json(TapeExport {
        format: "instavm.tape.v1".into(),
        exported_at: Utc::now(),
        tape: tape.record,
        events,
        checkpoints,
    }))
}
