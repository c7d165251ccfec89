//! Sessions: start, inspect, list, kill (spec §1.1, §1.7 to §1.12).

use crate::admission::{self, Resources};
use crate::auth::{authenticate, header_key, Principal};
use crate::config::Limits;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::sessions::{self, reason};
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use chrono::Utc;
use instavm_api::{
    AppUrl, AppUrlQuery, KillRequest, KillResponse, Metadata, SandboxListQuery, SessionInfo,
    SessionState, SessionStatus, SessionUsage, StartSessionRequest,
};
use instavm_runtime::{RuntimeError, SandboxSpec, SandboxState};
use instavm_store::{SessionRecord, UsageCounters};
use rand::RngCore;
use std::collections::BTreeMap;
use std::time::Duration;

const MAX_METADATA_BYTES: usize = 16 * 1024;
const MAX_ENV_VARS: usize = 256;
const MAX_ENV_BYTES: usize = 64 * 1024;

/// `POST /v1/sessions/session`: the key comes in the body (the official SDK) or the header.
pub async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<StartSessionRequest>,
) -> ApiResult<Json<SessionInfo>> {
    let key = match req.api_key.as_deref().map(str::trim) {
        Some(k) if !k.is_empty() => k.to_owned(),
        _ => header_key(&headers)?.ok_or_else(|| {
            ApiError::Unauthorized(
                "missing API key: send it as `api_key` in the body or in the X-API-Key header"
                    .into(),
            )
        })?,
    };
    let user = authenticate(&state, &key).await?;
    let limits = state.limits_for(user.id).await?;
    let mut spec = sandbox_spec(&state, &limits, &req)?;
    spec.tenant = Some(format!("user-{}", user.id));
    let metadata = req.metadata.clone().unwrap_or_default();
    check_metadata(&metadata)?;
    state.require_ready()?;

    let limit = limits.max_active_sessions_per_user;
    let user_id = user.id;
    if state.db(move |s| s.count_active_sessions(user_id)).await? >= limit {
        return Err(ApiError::Forbidden(format!(
            "active session limit reached: at most {limit} active sessions per user; kill one or wait for it to expire"
        )));
    }

    let reservation = admission::admit(
        &state,
        user_id,
        Resources::of_spec(&spec),
        &limits.admission,
    )
    .await?;

    // Creating the sandbox and recording the session run in their own task: a client that
    // hangs up midway must not leave a sandbox behind that no session owns. The reservation
    // counts until the session is stored.
    let task_state = state.clone();
    let rec = tokio::spawn(async move {
        let created = create(&task_state, user_id, spec, metadata).await;
        drop(reservation);
        created
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(sessions::info(&rec)))
}

async fn create(
    state: &AppState,
    user_id: i64,
    spec: SandboxSpec,
    metadata: Metadata,
) -> ApiResult<SessionRecord> {
    let lifetime = spec.lifetime;
    let (memory_mb, vcpu_count) = (spec.memory_mb, spec.vcpu_count);
    let started = std::time::Instant::now();
    let sandbox = state.runtime().create(spec).await?;
    state
        .metrics()
        .observe_sandbox_start(started.elapsed(), false);
    let rec = SessionRecord {
        id: uuid::Uuid::new_v4().to_string(),
        user_id,
        vm_id: new_vm_id(),
        sandbox_id: sandbox.id.to_string(),
        status: SessionState::Active,
        end_reason: None,
        memory_mb,
        vcpu_count,
        lifetime_seconds: lifetime.as_secs(),
        metadata,
        created_at: Utc::now(),
        expires_at: sandbox.expires_at,
        ended_at: None,
        usage: UsageCounters::default(),
    };
    let stored = {
        let rec = rec.clone();
        state.db(move |s| s.insert_session(&rec)).await
    };
    if let Err(err) = stored {
        if let Err(e) = state.runtime().destroy(&sandbox.id).await {
            tracing::warn!(error = %e, "destroying the sandbox of a failed session start");
        }
        return Err(err);
    }
    tracing::info!(session = %rec.id, vm_id = %rec.vm_id, sandbox = %sandbox.id, user = user_id, "session started");
    Ok(rec)
}

/// Turn the request into a sandbox spec, enforcing the user's limits `l`: over a limit is 403
/// in the wording the official deploy code recognises (`vm lifetime cannot exceed <N>s`), a
/// value that makes no sense is 422.
pub(crate) fn sandbox_spec(
    state: &AppState,
    l: &Limits,
    req: &StartSessionRequest,
) -> ApiResult<SandboxSpec> {
    // Over a tier limit is 403 in the wording the official deploy code reacts to (api.md
    // §6.1); below the minimum is a malformed value, 422.
    let lifetime = within(
        req.vm_lifetime_seconds
            .unwrap_or(l.default_lifetime_seconds),
        l.min_lifetime_seconds,
        l.max_lifetime_seconds,
        |max| format!("vm lifetime cannot exceed {max}s"),
        |min, got| format!("vm_lifetime_seconds must be at least {min}, got {got}"),
    )?;
    let memory_mb = within(
        req.memory_mb.unwrap_or(l.default_memory_mb),
        l.min_memory_mb,
        l.max_memory_mb,
        |max| format!("memory cannot exceed {max} MB"),
        |min, got| format!("memory_mb must be at least {min}, got {got}"),
    )?;
    // Never more vCPUs than the host has CPUs.
    let max_vcpus = l.max_vcpu_count.min(state.admission().host_cpus());
    let vcpu_count = within(
        req.vcpu_count.unwrap_or(l.default_vcpu_count),
        1,
        max_vcpus,
        |max| format!("vcpu count cannot exceed {max}"),
        |min, _| format!("vcpu_count must be at least {min}"),
    )?;
    let env = req.env.clone().unwrap_or_default();
    check_env(&env)?;
    Ok(SandboxSpec {
        memory_mb,
        vcpu_count,
        env,
        lifetime: Duration::from_secs(lifetime),
        ..SandboxSpec::default()
    })
}

fn within<T: PartialOrd + Copy>(
    value: T,
    min: T,
    max: T,
    over: impl FnOnce(T) -> String,
    under: impl FnOnce(T, T) -> String,
) -> ApiResult<T> {
    if value > max {
        return Err(ApiError::Forbidden(over(max)));
    }
    if value < min {
        return Err(ApiError::Unprocessable(under(min, value)));
    }
    Ok(value)
}

pub(crate) fn check_env(env: &BTreeMap<String, String>) -> ApiResult<()> {
    if env.len() > MAX_ENV_VARS {
        return Err(ApiError::Unprocessable(format!(
            "env has {} variables; at most {MAX_ENV_VARS} are allowed",
            env.len()
        )));
    }
    let mut total = 0;
    for (name, value) in env {
        let valid_name = name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
        if name.is_empty() || !valid_name {
            return Err(ApiError::Unprocessable(format!(
                "env name {name:?} is not valid: use letters, digits and '_', not starting with a digit"
            )));
        }
        if value.contains('\0') {
            return Err(ApiError::Unprocessable(format!(
                "env value of {name} contains a NUL byte"
            )));
        }
        total += name.len() + value.len();
    }
    if total > MAX_ENV_BYTES {
        return Err(ApiError::Unprocessable(format!(
            "env is larger than {MAX_ENV_BYTES} bytes"
        )));
    }
    Ok(())
}

pub(crate) fn check_metadata(metadata: &Metadata) -> ApiResult<()> {
    let size = serde_json::to_vec(metadata).map_or(usize::MAX, |v| v.len());
    if size > MAX_METADATA_BYTES {
        return Err(ApiError::Unprocessable(format!(
            "metadata is larger than {MAX_METADATA_BYTES} bytes"
        )));
    }
    Ok(())
}

/// `vm_` and 24 hex digits: not a UUID, so clients can tell VM ids from session ids.
fn new_vm_id() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("vm_{}", hex::encode(bytes))
}

/// `GET /v1/sessions/session/{id}`.
pub async fn info(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<SessionInfo>> {
    let rec = sessions::owned(&state, user.id, &id).await?;
    Ok(Json(sessions::info(&rec)))
}

/// `GET /v1/sessions/status/{id}`: asks the runtime whether the sandbox still runs.
pub async fn status(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<SessionStatus>> {
    let mut rec = sessions::owned(&state, user.id, &id).await?;
    let mut alive = false;
    if rec.status == SessionState::Active {
        let found = state.runtime().get(&sessions::sandbox_id(&rec)?).await;
        match found {
            Ok(info) if info.state == SandboxState::Running => alive = true,
            // Gone, or still listed but stopped: either way the session is over.
            Ok(_) | Err(RuntimeError::NotFound(_)) => {
                sessions::sandbox_gone(&state, &rec).await;
                let rid = rec.id.clone();
                rec = state
                    .db(move |s| s.get_session(&rid))
                    .await?
                    .ok_or_else(|| ApiError::NotFound(sessions::NOT_FOUND.into()))?;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(Json(SessionStatus {
        session_id: rec.id.clone(),
        vm_id: rec.vm_id.clone(),
        vm_status: if alive {
            "active".to_owned()
        } else {
            rec.status.as_str().to_owned()
        },
        status: rec.status,
        exists: true,
        vm_assigned: true,
        vm_alive: alive,
        expires_at: rec.expires_at,
        end_reason: rec.end_reason.clone(),
    }))
}

/// `GET /v1/sessions/usage/{id}`.
pub async fn usage(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<SessionUsage>> {
    let rec = sessions::owned(&state, user.id, &id).await?;
    let mut counters = rec.usage;
    counters.add(state.unflushed_usage(&rec.id));
    let live = if rec.status == SessionState::Active {
        state
            .runtime()
            .stats(&sessions::sandbox_id(&rec)?)
            .await
            .ok()
    } else {
        None
    };
    let until = rec.ended_at.unwrap_or_else(Utc::now);
    Ok(Json(SessionUsage {
        session_id: rec.id.clone(),
        vm_id: rec.vm_id.clone(),
        status: rec.status,
        execution_count: counters.execution_count,
        execution_time: counters.execution_seconds,
        cpu_time: counters.cpu_seconds,
        uptime_seconds: (until - rec.created_at).num_milliseconds().max(0) as f64 / 1000.0,
        memory_mb: rec.memory_mb,
        vcpu_count: rec.vcpu_count,
        memory_bytes: live.as_ref().map(|s| s.memory_bytes),
        memory_limit_bytes: live.as_ref().map(|s| s.memory_limit_bytes),
        disk_bytes: live.as_ref().map(|s| s.disk_bytes),
        disk_limit_bytes: live.as_ref().map(|s| s.disk_limit_bytes),
        pids: live.as_ref().map(|s| s.pids),
    }))
}

/// `GET /v1/sessions/app-url/{id}?port=`: the session's share of the port (made public when
/// there is none yet; `crate::shares`).
pub async fn app_url(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
    ApiQuery(query): ApiQuery<AppUrlQuery>,
) -> ApiResult<Json<AppUrl>> {
    let port = crate::shares::check_port(query.port.unwrap_or(80).into())?;
    Ok(Json(
        crate::shares::app_url(&state, user.id, &id, port).await?,
    ))
}

/// `GET /v1/sessions/sandboxes`: the caller's sessions, newest first, as a bare array.
pub async fn list_sandboxes(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiQuery(query): ApiQuery<SandboxListQuery>,
) -> ApiResult<Json<Vec<SessionInfo>>> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Unprocessable(format!(
            "limit must be between 1 and 1000, got {limit}"
        )));
    }
    let filter: Metadata = match query.metadata.as_deref() {
        None | Some("") => Metadata::new(),
        Some(raw) => serde_json::from_str(raw).map_err(|e| {
            ApiError::Unprocessable(format!(
                "metadata must be a JSON-encoded object such as {{\"env\": \"prod\"}}: {e}"
            ))
        })?,
    };
    let user_id = user.id;
    let sessions = state
        .db(move |s| {
            s.list_user_sessions(user_id, limit as usize, |rec| {
                filter.iter().all(|(k, v)| rec.metadata.get(k) == Some(v))
            })
        })
        .await?;
    Ok(Json(sessions.iter().map(sessions::info).collect()))
}

/// `POST /kill`: destroy the session's sandbox. An ended session is 404, so a second kill
/// tells the caller it was already gone.
pub async fn kill(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiJson(req): ApiJson<KillRequest>,
) -> ApiResult<Json<KillResponse>> {
    let rec = sessions::active_or_suspended(&state, user.id, &req.session_id).await?;
    if !sessions::end(&state, &rec, SessionState::Terminated, reason::KILLED).await? {
        let id = rec.id.clone();
        let now = state.db(move |s| s.get_session(&id)).await?;
        return Err(now.map_or_else(
            || ApiError::NotFound(sessions::NOT_FOUND.into()),
            |r| sessions::ended_error(&r),
        ));
    }
    Ok(Json(KillResponse {
        success: true,
        session_id: rec.id,
        status: SessionState::Terminated,
    }))
}
