//! Session rules shared by the handlers: ownership, liveness, ending a session.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::Utc;
use instavm_api::{SessionInfo, SessionState};
use instavm_runtime::{RuntimeError, SandboxId};
use instavm_store::SessionRecord;

/// The one answer for "unknown" and "not yours", so other users' sessions cannot be probed.
pub const NOT_FOUND: &str = "session not found";

/// Reasons recorded when a session ends.
pub mod reason {
    pub const KILLED: &str = "killed";
    pub const EXPIRED: &str = "lifetime ended";
    pub const DIED: &str = "sandbox died";
    pub const LOST: &str = "sandbox was lost while the server was down";
    pub const DESTROYED: &str = "sandbox destroyed";
    pub const VM_DELETED: &str = "vm deleted";
    pub const SUSPENDED: &str = "suspended";
}

/// The caller's session with this id, with an overdue expiry applied.
pub async fn owned(state: &AppState, user_id: i64, id: &str) -> ApiResult<SessionRecord> {
    // Session ids are UUIDs; anything else cannot name a session, so skip the lookup.
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(ApiError::NotFound(NOT_FOUND.into()));
    }
    let id = id.to_owned();
    let rec = state
        .db(move |s| s.get_user_session(user_id, &id))
        .await?
        .ok_or_else(|| ApiError::NotFound(NOT_FOUND.into()))?;
    expire_if_due(state, rec).await
}

/// The caller's session, which must still be active.
pub async fn active(state: &AppState, user_id: i64, id: &str) -> ApiResult<SessionRecord> {
    let mut rec = owned(state, user_id, id).await?;
    if rec.status == SessionState::Suspended {
        // Resumed (when its VM has auto_resume) or a 409 that says how.
        crate::vms::wake_session(state, &rec).await?;
        rec = owned(state, user_id, id).await?;
    }
    if rec.status != SessionState::Active {
        return Err(ended_error(&rec));
    }
    Ok(rec)
}

/// The caller's session, active or suspended (a kill ends either, without resuming it).
pub async fn active_or_suspended(
    state: &AppState,
    user_id: i64,
    id: &str,
) -> ApiResult<SessionRecord> {
    let rec = owned(state, user_id, id).await?;
    match rec.status {
        SessionState::Active | SessionState::Suspended => Ok(rec),
        _ => Err(ended_error(&rec)),
    }
}

/// 404 for a session that exists (and is the caller's) but has ended.
pub fn ended_error(rec: &SessionRecord) -> ApiError {
    ApiError::NotFound(format!(
        "session {} is no longer active ({}: {})",
        rec.id,
        rec.status.as_str(),
        rec.end_reason.as_deref().unwrap_or("ended")
    ))
}

/// End a session whose lifetime has passed, without waiting for the sweeper.
async fn expire_if_due(state: &AppState, rec: SessionRecord) -> ApiResult<SessionRecord> {
    if rec.status != SessionState::Active || Utc::now() < rec.expires_at {
        return Ok(rec);
    }
    end(state, &rec, SessionState::Expired, reason::EXPIRED).await?;
    let id = rec.id.clone();
    state
        .db(move |s| s.get_session(&id))
        .await?
        .ok_or_else(|| ApiError::Internal(format!("session {} vanished", rec.id)))
}

pub fn sandbox_id(rec: &SessionRecord) -> ApiResult<SandboxId> {
    SandboxId::parse(&rec.sandbox_id).ok_or_else(|| {
        ApiError::Internal(format!(
            "session {} has a malformed sandbox id {:?}",
            rec.id, rec.sandbox_id
        ))
    })
}

/// Record that a session ended, then destroy its sandbox (if it still runs). Recording first
/// means the runtime's "destroyed" event finds the session already ended with the right
/// reason. Returns false when something else ended it first.
pub async fn end(
    state: &AppState,
    rec: &SessionRecord,
    new_state: SessionState,
    why: &str,
) -> ApiResult<bool> {
    let sandbox = sandbox_id(rec)?;
    let changed = mark_ended(state, &rec.id, new_state, why).await?;
    match state.runtime().destroy(&sandbox).await {
        Ok(()) | Err(RuntimeError::NotFound(_)) => {}
        // The session is over either way; the start-up reconciliation destroys sandboxes that
        // no active session owns.
        Err(err) => tracing::warn!(session = %rec.id, error = %err, "destroying a sandbox failed"),
    }
    Ok(changed)
}

/// Record that a session ended, without touching its sandbox (which is already gone).
pub async fn mark_ended(
    state: &AppState,
    session_id: &str,
    new_state: SessionState,
    why: &str,
) -> ApiResult<bool> {
    let id = session_id.to_owned();
    let why_owned = why.to_owned();
    let changed = state
        .db(move |s| s.end_session(&id, new_state, &why_owned, Utc::now()))
        .await?;
    if changed {
        tracing::info!(session = %session_id, state = new_state.as_str(), reason = why, "session ended");
    }
    Ok(changed)
}

/// The runtime says the sandbox is gone: end the session with the right reason and give the
/// caller a 404 that says so.
pub async fn sandbox_gone(state: &AppState, rec: &SessionRecord) -> ApiError {
    let (new_state, why) = if Utc::now() >= rec.expires_at {
        (SessionState::Expired, reason::EXPIRED)
    } else {
        (SessionState::Terminated, reason::DIED)
    };
    if let Err(err) = mark_ended(state, &rec.id, new_state, why).await {
        return err;
    }
    ApiError::NotFound(format!(
        "session {} is no longer active ({}: {why})",
        rec.id,
        new_state.as_str()
    ))
}

pub fn info(rec: &SessionRecord) -> SessionInfo {
    SessionInfo {
        session_id: rec.id.clone(),
        vm_id: rec.vm_id.clone(),
        status: rec.status,
        created_at: rec.created_at,
        expires_at: rec.expires_at,
        ended_at: rec.ended_at,
        end_reason: rec.end_reason.clone(),
        vm_lifetime_seconds: rec.lifetime_seconds,
        memory_mb: rec.memory_mb,
        vcpu_count: rec.vcpu_count,
        metadata: rec.metadata.clone(),
    }
}
