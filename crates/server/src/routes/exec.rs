//! `/execute`, `/execute_async` and `GET /v1/executions/{id}` (spec §1.2 to §1.4).

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::exec;
use crate::extract::{ApiJson, ApiPath};
use crate::json_body;
use crate::sessions;
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use chrono::Utc;
use instavm_api::{
    ExecuteAsyncResponse, ExecuteRequest, ExecuteResponse, ExecutionRecord, TaskStatus,
};
use instavm_store::ExecutionRow;
use std::sync::Arc;

/// Run code and wait for it. A non-zero exit code or a timeout is still 200.
///
/// The answer streams: stdout (twice, as `stdout` and `output`) and stderr are escaped as they
/// are sent, and the execution's place under the concurrency limits is held until then.
pub async fn execute(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiJson(req): ApiJson<ExecuteRequest>,
) -> ApiResult<Response> {
    let language = exec::parse_language(req.language.as_deref())?;
    let timeout = exec::check_timeout(&state, req.timeout)?;
    let rec = sessions::active(&state, user.id, &req.session_id).await?;
    let pass = exec::try_slot(&state, &rec)?;
    let deadline = exec::sync_deadline(&rec, timeout);
    let out = exec::run(&state, &rec, language, req.command, deadline).await?;
    let (stdout, stderr) = (Arc::new(out.stdout), Arc::new(out.stderr));
    let head = ExecuteResponse {
        stdout: String::new(),
        stderr: String::new(),
        exit_code: out.exit_code,
        execution_time: out.execution_time,
        cpu_time: out.cpu_time,
        output: String::new(),
        timed_out: out.timed_out,
        language: language.as_str().into(),
    };
    let texts = vec![
        ("stdout", stdout.clone()),
        ("output", stdout),
        ("stderr", stderr),
    ];
    json_body::object_with_texts(&head, texts, pass).map_err(ApiError::internal)
}

/// Start code in the background; poll `GET /v1/executions/{task_id}` for the result.
pub async fn execute_async(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiJson(req): ApiJson<ExecuteRequest>,
) -> ApiResult<Json<ExecuteAsyncResponse>> {
    let language = exec::parse_language(req.language.as_deref())?;
    let timeout = exec::check_timeout(&state, req.timeout)?;
    let rec = sessions::active(&state, user.id, &req.session_id).await?;
    let limit = state.limits().max_pending_tasks_per_user;
    let user_id = user.id;
    if state
        .db(move |s| s.count_pending_executions(user_id))
        .await?
        >= limit
    {
        return Err(ApiError::TooManyRequests(format!(
            "too many pending tasks: at most {limit} per user; wait for some to finish"
        )));
    }
    let task_id = uuid::Uuid::new_v4().to_string();
    {
        let (task_id, session_id) = (task_id.clone(), rec.id.clone());
        state
            .db(move |s| {
                s.insert_execution(
                    &task_id,
                    &session_id,
                    user_id,
                    language.as_str(),
                    Utc::now(),
                )
            })
            .await?;
    }
    let deadline = exec::async_deadline(&rec, timeout);
    let session_id = rec.id.clone();
    exec::spawn_task(state, rec, task_id.clone(), language, req.command, deadline);
    Ok(Json(ExecuteAsyncResponse {
        task_id,
        session_id,
        status: TaskStatus::Pending,
        language: language.as_str().into(),
    }))
}

/// `GET /v1/executions/{task_id}`.
pub async fn get_execution(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(task_id): ApiPath,
) -> ApiResult<Response> {
    let not_found = || ApiError::NotFound("task not found".into());
    if uuid::Uuid::parse_str(&task_id).is_err() {
        return Err(not_found());
    }
    let user_id = user.id;
    // A stored output can be tens of MB: a user's reads of results in memory at once are
    // limited like their executions. Extra reads wait rather than fail, because the official
    // client's poll loop stops at a 429.
    let limit = state.limits().max_concurrent_execs_per_user;
    let pass = state
        .gate()
        .enter(&[(format!("task-read-user:{user_id}"), limit)])
        .await;
    let row = state
        .db(move |s| s.get_user_execution(user_id, &task_id))
        .await?
        .ok_or_else(not_found)?;
    // Streamed like `/execute`, holding the place until it is sent.
    let mut rec = record(row);
    let stdout = Arc::new(std::mem::take(&mut rec.serialized_stdout));
    let stderr = Arc::new(std::mem::take(&mut rec.serialized_stderr));
    let texts = vec![("serialized_stdout", stdout), ("serialized_stderr", stderr)];
    json_body::object_with_texts(&rec, texts, pass).map_err(ApiError::internal)
}

fn record(row: ExecutionRow) -> ExecutionRecord {
    // The official client returns only stdout and stderr, so a failed task's reason goes into
    // stderr too, where its caller will see it.
    let stderr = match (&row.error, row.stderr.is_empty()) {
        (Some(err), true) => format!("task failed: {err}\n"),
        _ => row.stderr,
    };
    ExecutionRecord {
        task_id: row.id,
        session_id: row.session_id,
        language: row.language,
        status: row.status,
        is_complete: row.status != TaskStatus::Pending,
        serialized_stdout: row.stdout,
        serialized_stderr: stderr,
        exit_code: row.exit_code,
        timed_out: row.timed_out,
        execution_time: row.execution_time,
        cpu_time: row.cpu_time,
        error: row.error,
        created_at: row.created_at,
        completed_at: row.completed_at,
    }
}
